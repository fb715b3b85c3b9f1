"""Class names of a weights file that records none (ssd_zoo.weights.file_classes): a training checkpoint's own
list, a published file recognised by its SHA-256 prefix (in its name or of its bytes), its layout's label space;
the caller's weights_class_names over all of them. Each case checks the class rows loaded, not only the names."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torchvision.models import WeightsEnum

import ssd_zoo
from ssd_zoo.models.record import split_record
from ssd_zoo import files
from ssd_zoo.finetune.surgery import ClassNamesWarning, HeadSurgeryWarning, class_predictors
from ssd_zoo.weights import published
from ssd_zoo.weights.file_classes import file_classes
from ssd_zoo.weights.published import COCO_CATEGORIES, VOC_CATEGORIES, ssd_weights

SMALL = {"backbone": "resnet10t", "input_size": 128}  # a small registered SSD, for files of any class count


def bare_small(num_classes: int, seed: int = 0) -> ssd_zoo.SSD:
    torch.manual_seed(seed)
    return ssd_zoo.build("ssd", num_classes=num_classes, **SMALL)


def predictor_rows(model: ssd_zoo.SSD, num_classes: int) -> list[torch.Tensor]:
    """Each class predictor's weight as ``[boxes, num_classes, ...]`` (box-major channels)."""
    state = model.state_dict()
    return [state[f"{name}.weight"].reshape(-1, num_classes, *state[f"{name}.weight"].shape[1:])
            for name in class_predictors(model)]


def built(**kwargs: object) -> tuple[ssd_zoo.SSD, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ssd_zoo.build("ssd", **SMALL, **kwargs)
    return model, [w for w in caught if issubclass(w.category, (ClassNamesWarning, HeadSurgeryWarning))]


def test_a_training_checkpoints_class_names_name_its_rows(tmp_path: Path) -> None:
    """train_voc.py has saved {"model", "config", "class_names", ...} since its first version; an earlier
    ssd_zoo's model record may hold no names: the list next to the weights names the rows."""
    source = bare_small(4)
    state = split_record(source.state_dict())[0]
    torch.save({"model": state, "config": {}, "class_names": ["star", "ring", "disc"]}, tmp_path / "best.pth")
    model, caught = built(weights=tmp_path / "best.pth", class_names=["disc", "star"])
    assert model.class_names == ["__background__", "disc", "star"]
    assert [str(w.message) for w in caught if issubclass(w.category, ClassNamesWarning)] == []
    for got, want in zip(predictor_rows(model, 3), predictor_rows(source, 4)):
        assert torch.equal(got, want[:, [0, 3, 1]])


def test_a_published_file_is_known_by_the_hash_prefix_in_its_name(tmp_path: Path) -> None:
    source = bare_small(91)
    path = tmp_path / "ssd300_vgg16_coco-b556d3b4.pth"  # torchvision's COCO_V1 file name: its entry's 91 names
    torch.save(split_record(source.state_dict())[0], path)
    model, caught = built(weights=path, class_names=["person", "dog"])
    assert not [w for w in caught if issubclass(w.category, HeadSurgeryWarning)]
    person, dog = COCO_CATEGORIES.index("person"), COCO_CATEGORIES.index("dog")
    for got, want in zip(predictor_rows(model, 3), predictor_rows(source, 91)):
        assert torch.equal(got, want[:, [0, person, dog]])


def test_a_published_file_is_known_by_the_hash_of_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = bare_small(3)
    path = tmp_path / "renamed.pth"
    torch.save(split_record(source.state_dict())[0], path)
    entry = ssd_weights("https://example.invalid/x.pth", model="ssd", input_size=128, layout="ssd_zoo", num_classes=3,
                        anchors="voc", categories=["__background__", "cat", "dog"], dataset="-", metrics={},
                        metrics_source="-", recipe="-", sha256=files.file_sha256(path)[:8])
    monkeypatch.setitem(published._WEIGHTS, "ssd", WeightsEnum("Test_Weights", {"PETS": entry}))
    model, caught = built(weights=path, class_names=["dog", "cat"])
    assert not caught and model.class_names == ["__background__", "dog", "cat"]
    for got, want in zip(predictor_rows(model, 3), predictor_rows(source, 3)):
        assert torch.equal(got, want[:, [0, 2, 1]])


@pytest.mark.parametrize("layout, num_classes, names", [
    ("ssd.pytorch", 21, VOC_CATEGORIES), ("ssd.pytorch", 81, published.COCO80_CATEGORIES),
    ("torchvision", 91, COCO_CATEGORIES), ("torchvision-ssdlite", 91, COCO_CATEGORIES),
    ("lufficc", 21, VOC_CATEGORIES), ("lufficc", 81, published.COCO80_CATEGORIES),
    ("qfgaohao", 21, VOC_CATEGORIES), ("nvidia", 81, published.COCO80_CATEGORIES),
])
def test_each_publisher_layout_names_its_label_space(layout: str, num_classes: int, names: list[str]) -> None:
    """The label space each publisher's code fixes (ssd.pytorch data/voc0712.py VOC_CLASSES and data/coco.py
    COCO_CLASSES; torchvision's COCO ids with "N/A"; lufficc's VOCDataset/COCODataset; qfgaohao's VOC labels
    file; NVIDIA's COCO category ids in order), said in one line."""
    with pytest.warns(ClassNamesWarning, match=rf"f.pth records no class names: its {num_classes} classes are "
                                               rf"taken as the {layout} layout's label space"):
        found = file_classes(num_classes, given=None, recorded=None, layout=layout, where="f.pth")
    assert list(found.names) == names and len(names) == num_classes
    assert file_classes(num_classes + 1, given=None, recorded=None, layout=layout, where="f.pth").names is None
