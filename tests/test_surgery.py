"""Head surgery (ssd_zoo.finetune.surgery): weights for other classes load into a model, on every registered model and from
every weights source (published names from a seeded cache or file:// enums, ssd_zoo checkpoints, torchvision and
ssd.pytorch files); carried classes keep their logits on the sample photos, fresh rows are the model's own init."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from helpers import BUILD_KWARGS, NUM_CLASSES, save_hashed
from torchvision.models import WeightsEnum

import ssd_zoo
from ssd_zoo.models.record import decode_record, encode_record, split_record
from ssd_zoo.weights import convert
from ssd_zoo.finetune.surgery import SYNONYMS, ClassNamesWarning, HeadSurgeryWarning, check_class_names, class_predictors, match_classes, name_key
from ssd_zoo.weights.published import COCO_CATEGORIES, VOC_CATEGORIES, ssd_weights

VOC_NAMES = VOC_CATEGORIES[1:]


@pytest.fixture(autouse=True)
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def predictor_keys(model: torch.nn.Module) -> list[str]:
    return [f"{name}.{p}" for name in class_predictors(model) for p in ("weight", "bias")]


def rows(tensor: torch.Tensor, num_classes: int, classes: list[int]) -> torch.Tensor:
    """The channels of ``classes`` of a box-major class predictor tensor, ``[k, len(classes), ...]``."""
    return tensor.reshape(-1, num_classes, *tensor.shape[1:])[:, classes]


def logits(model: ssd_zoo.SSD, images: list[torch.Tensor]) -> torch.Tensor:
    """Class logits ``[B, A, C]`` before the softmax (the scores of a narrower model are renormalised)."""
    with torch.no_grad():
        return model.head(model.backbone(model.transform(images).images))[0]


def assert_same_logits(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal up to float32 summation order: the carried weights are bit-equal, but a conv with fewer output
    channels may be computed by another kernel (oneDNN blocks the channels), so the last bits may differ: on a
    2-core AVX-512 EPYC, by up to 4e-6 on logits of order 1 after VGG16's 4608-term sums. A wrong or shifted
    class column differs by tenths."""
    torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-5)


def built_quietly(*args: object, **kwargs: object) -> tuple[ssd_zoo.SSD, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ssd_zoo.build(*args, **kwargs)
    return model, [w for w in caught if issubclass(w.category, HeadSurgeryWarning)]


def test_names_match_case_space_and_synonyms() -> None:
    for voc, coco in SYNONYMS.items():
        assert name_key(voc) == name_key(coco) == name_key(coco.upper()), (voc, coco)
    assert name_key("Dining Table") == name_key("diningtable") == name_key("dining_table")
    assert name_key("TV Monitor") == name_key("tv")
    assert name_key("car") != name_key("cat")
    # Every VOC class is found in torchvision's COCO list (the N/A placeholders never match).
    found = match_classes(VOC_CATEGORIES, COCO_CATEGORIES)
    assert None not in found and found[0] == 0
    assert [COCO_CATEGORIES[i] for i in found[1:6]] == ["airplane", "bicycle", "bird", "boat", "bottle"]
    assert match_classes(["__background__", "N/A"], COCO_CATEGORIES) == [0, None]


@pytest.mark.parametrize("names, num_classes, message", [
    ([], None, "expected at least one name"),
    (["car", " "], None, r"class_names\[1\]: expected a name"),
    (["car", "Car "], None, r"'Car ' \(index 1\) names the same class as 'car' \(index 0\)"),
    (["sofa", "couch"], None, "names the same class"),
    (["__background__", "car"], None, "background .* is implicit"),
    (["car", "dog"], 5, "num_classes=5 contradicts class_names: 2 names are 3 classes"),
    ("car", None, "expected a list of strings"),
])
def test_bad_class_names_raise(names: list[str], num_classes: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_class_names(names, num_classes)
    with pytest.raises(ValueError, match=message):
        ssd_zoo.build("ssd", backbone="resnet10t", input_size=128, class_names=names, num_classes=num_classes)


@pytest.mark.parametrize("name", ssd_zoo.list_models())
def test_surgery_on_every_registered_model(name: str, tmp_path: Path, built) -> None:
    """Weights for 3 classes (cat, dog, bird) -> a model for 4 (bird, fox, Cat, owl): every other tensor loaded,
    bird and cat carried per box, fox and owl as a model built with the same seed and no weights has them.
    (The 3-class weights are the 4-class model's with other class predictors, and the 4-class model is the
    session's: one build per model here, the one with weights.)"""
    kwargs = BUILD_KWARGS.get(name, {})
    assert NUM_CLASSES == 5
    fresh = built(name, num_classes=NUM_CLASSES, **kwargs)  # the session's, weights drawn after manual_seed(0)
    init = fresh.state_dict()
    keys = predictor_keys(fresh)
    assert len(keys) == 2 * len(fresh.head.classification)
    theirs = dict(init)
    torch.manual_seed(1)
    for key in keys:
        theirs[key] = torch.randn(init[key].shape[0] // 5 * 4, *init[key].shape[1:])
    record = decode_record(init["_record"])
    theirs["_record"] = encode_record({**record, "num_classes": 4,
                                       "categories": ["__background__", "cat", "dog", "bird"]})
    torch.save({"model": theirs, "epoch": 1}, tmp_path / "source.pth")  # a training checkpoint
    torch.manual_seed(0)
    model, caught = built_quietly(name, weights=tmp_path / "source.pth", class_names=["bird", "fox", "Cat", "owl"],
                                  **kwargs)
    assert model.class_names == ["__background__", "bird", "fox", "Cat", "owl"] and model.num_classes == 5
    assert len(caught) == 1 and "['fox', 'owl'] were initialised afresh" in str(caught[0].message)
    own = model.state_dict()
    for key in keys:
        assert torch.equal(rows(own[key], 5, [0, 1, 3]), rows(theirs[key], 4, [0, 3, 1])), key
        assert torch.equal(rows(own[key], 5, [2, 4]), rows(init[key], 5, [2, 4])), key
    for key in set(own) - set(keys) - {"_record"}:
        assert torch.equal(own[key], theirs[key]), key


def test_coco_to_voc_logits_equal_on_the_photos(tmp_path: Path, sample_images: list[torch.Tensor]) -> None:
    """A COCO-trained SSD300 (torchvision's layout and names, served as a published entry over file://) made
    into a VOC detector without training: every VOC class's logits are the COCO model's for that class."""
    torch.manual_seed(0)
    coco = ssd_zoo.build("ssd300_vgg16", num_classes=91, anchors="coco").eval()
    path, prefix = save_hashed(convert.to_torchvision(coco.state_dict()), tmp_path / "served", "ssd300_coco")
    entry = ssd_weights(path.as_uri(), sha256=prefix, model="ssd300_vgg16", input_size=300, layout="torchvision",
                        num_classes=91, anchors="coco", categories=COCO_CATEGORIES, dataset="test", metrics={},
                        metrics_source="-", recipe="-")
    weights = WeightsEnum("CocoTest", {"COCO": entry}).COCO
    voc, caught = built_quietly("ssd300_vgg16", weights=weights, class_names=VOC_NAMES)
    assert not caught  # every VOC class is a COCO class: nothing initialised, nothing to warn about
    assert voc.class_names == VOC_CATEGORIES and voc.default_boxes.spec == coco.default_boxes.spec
    columns = match_classes(VOC_CATEGORIES, COCO_CATEGORIES)
    assert_same_logits(logits(voc.eval(), sample_images), logits(coco, sample_images)[..., columns])


def test_published_name_from_a_seeded_cache(torch_home: Path, sample_images: list[torch.Tensor], built) -> None:
    """weights="VOC0712" (ssd.pytorch's file, cached as torch.hub names it) narrowed to 3 classes and a new one."""
    source = built("ssd300_vgg16").eval()
    torch_home.mkdir(parents=True)
    torch.save(convert.to_ssd_pytorch(source.state_dict()), torch_home / "ssd300_mAP_77.43_v2.pth")
    model, caught = built_quietly("ssd300_vgg16", weights="VOC0712", class_names=["TV", "person", "kite", "car"])
    assert len(caught) == 1 and "['kite']" in str(caught[0].message) and "tv <- tvmonitor" not in str(caught[0].message)
    assert "TV <- tvmonitor" in str(caught[0].message)
    tv, person, car = (VOC_CATEGORIES.index(n) for n in ("tvmonitor", "person", "car"))
    got, want = logits(model.eval(), sample_images[:1]), logits(source, sample_images[:1])
    assert_same_logits(got[..., [0, 1, 2, 4]], want[..., [0, tv, person, car]])


@pytest.mark.parametrize("layout", ["torchvision", "ssd.pytorch", "ssd_zoo"])
def test_every_file_layout_with_num_classes(layout: str, tmp_path: Path) -> None:
    """num_classes alone: nothing says which class is which, so every class row (background too) is fresh."""
    torch.manual_seed(0)
    source = ssd_zoo.build("ssd300_vgg16")
    bare = split_record(source.state_dict())[0]  # written with the layout's own boxes (torchvision: coco)
    state = convert.from_ssd_zoo(bare, layout, anchors=convert.LAYOUT_ANCHORS[layout]) if layout != "ssd_zoo" else \
        source.state_dict()
    torch.save(state, tmp_path / "net.pth")
    torch.manual_seed(3)
    model, caught = built_quietly("ssd300_vgg16", weights=str(tmp_path / "net.pth"), num_classes=4)
    torch.manual_seed(3)
    init = ssd_zoo.build("ssd300_vgg16", num_classes=4).state_dict()
    assert len(caught) == 1 and "no class_names were given" in str(caught[0].message)
    assert model.num_classes == 4 and model.head.num_classes == 4
    own, theirs = model.state_dict(), source.state_dict()
    for key in predictor_keys(model):
        assert torch.equal(own[key], init[key]), key
    assert torch.equal(own["backbone.features.conv1_1.weight"], theirs["backbone.features.conv1_1.weight"])
    assert torch.equal(own["head.regression.3.weight"], theirs["head.regression.3.weight"])


def test_a_file_without_names_carries_every_row_in_order(tmp_path: Path) -> None:
    """No names in the file, as many classes as asked: every row is carried, in order, with a warning that the
    order was assumed; another count raises (nothing says which row is which) unless num_classes asks for it."""
    torch.manual_seed(0)
    source = ssd_zoo.build("ssd", backbone="resnet10t", input_size=128, num_classes=3)
    torch.save(split_record(source.state_dict())[0], tmp_path / "bare.pth")  # as saved before 0.2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ssd_zoo.build("ssd", backbone="resnet10t", input_size=128, weights=tmp_path / "bare.pth",
                              class_names=["a", "b"])
    said = [str(w.message) for w in caught if issubclass(w.category, (ClassNamesWarning, HeadSurgeryWarning))]
    assert len(said) == 1 and "bare.pth records no class names: its 2 classes are taken to be ['a', 'b'] in that " \
                              "order" in said[0]
    assert model.class_names == ["__background__", "a", "b"]
    key = predictor_keys(model)[0]
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])
    with pytest.raises(ValueError, match=r"bare.pth records no class names and was trained for 2 classes, the model "
                                         r"asks for 3 .* weights_class_names=\[...\] .* or pass num_classes=4"):
        ssd_zoo.build("ssd", backbone="resnet10t", input_size=128, weights=tmp_path / "bare.pth",
                      class_names=["a", "b", "c"])
    fresh, caught = built_quietly("ssd", backbone="resnet10t", input_size=128, weights=tmp_path / "bare.pth",
                                  class_names=["a", "b", "c"], num_classes=4)
    assert len(caught) == 1 and "records no class names" in str(caught[0].message)
    assert torch.equal(rows(fresh.state_dict()[key], 4, [0]), rows(source.state_dict()[key], 3, [0]))


def test_weights_class_names_name_the_file_and_override_its_record(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ssd_zoo.build("ssd", backbone="resnet10t", input_size=128, class_names=["a", "b"])
    torch.save(source.state_dict(), tmp_path / "named.pth")
    model, caught = built_quietly("ssd", backbone="resnet10t", input_size=128, weights=tmp_path / "named.pth",
                                  weights_class_names=["b", "a"], class_names=["a", "b"])
    key = predictor_keys(model)[0]
    assert not caught and model.class_names == ["__background__", "a", "b"]
    assert torch.equal(model.state_dict()[key], rows(source.state_dict()[key], 3, [0, 2, 1]).reshape_as(model.state_dict()[key]))
    alone = ssd_zoo.build("ssd", backbone="resnet10t", input_size=128, weights=tmp_path / "named.pth",
                          weights_class_names=["x", "y"])
    assert alone.class_names == ["__background__", "x", "y"]
    with pytest.raises(ValueError, match=r"weights_class_names: expected 2 names \(.*named.pth was trained for 3 "
                                         r"classes with background\), found 3"):
        ssd_zoo.build("ssd", backbone="resnet10t", input_size=128, weights=tmp_path / "named.pth",
                      weights_class_names=["x", "y", "z"])


def test_the_names_are_saved_and_the_same_names_load_plainly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ssd_zoo.build("ssdlite320", backbone="mobilenetv3_small_050", class_names=["a", "b", "c"])
    torch.save(source.state_dict(), tmp_path / "three.pth")
    model, caught = built_quietly("ssdlite320", backbone="mobilenetv3_small_050", weights=tmp_path / "three.pth",
                                  class_names=["c", "a"])
    assert not caught and model.class_names == model.categories == ["__background__", "c", "a"]
    assert list(class_predictors(model)) == [f"head.classification.{i}.pointwise" for i in range(6)]
    torch.save(model.state_dict(), tmp_path / "two.pth")
    again, caught = built_quietly("ssdlite320", backbone="mobilenetv3_small_050", weights=tmp_path / "two.pth",
                                  class_names=["c", "a"])
    assert not caught and again.class_names == ["__background__", "c", "a"]
    x = [torch.rand(3, 64, 80)]
    assert_same_logits(logits(again.eval(), x), logits(source.eval(), x)[..., [0, 3, 1]])


def test_weights_for_another_backbone_raise(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(ssd_zoo.build("ssd300_resnet18", num_classes=3).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match=r"r18.pth \(saved from ssd_zoo.build\('ssd300_resnet18'\)\) does not fit "
                                         r"this model: .* expected \d+ such tensors, found \d+: \d+ missing"):
        ssd_zoo.build("ssd300_vgg16", weights=tmp_path / "r18.pth", num_classes=5)
