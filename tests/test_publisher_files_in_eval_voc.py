"""Files that record no class names, in each publisher's layout as its code saves them, evaluated by
recipes/eval_voc.py on a VOC-format folder of that publisher's classes: every class row is the file's own (none
re-initialised), and the per-class AP is that of the model built directly from the file.

The files come from the publisher tests' builders (their key layouts and wrappers, random weights); the folders
hold two small photos whose ground truth is the directly built model's best detections, so that a wrong or fresh
class row changes the AP."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from helpers import ROOT
from PIL import Image
from test_convert import ssd_pytorch_state_dict
from test_publisher_lufficc_mobile import lufficc_state
from test_publisher_nvidia import their_state_dict
from test_publisher_qfgaohao import state_for
from torchvision.models.detection import ssd300_vgg16 as torchvision_ssd300
from torchvision.models.detection import ssdlite320_mobilenet_v3_large as torchvision_ssdlite

import ssd_zoo
from ssd_zoo.models.record import split_record
from ssd_zoo.finetune.surgery import ClassNamesWarning, HeadSurgeryWarning, class_predictors
from ssd_zoo.weights import convert
from ssd_zoo.weights.published import COCO80_CATEGORIES, COCO_CATEGORIES, VOC_CATEGORIES

sys.path.insert(0, str(ROOT))
from recipes import eval_voc  # noqa: E402
from ssd_zoo.train.config import TrainConfig  # noqa: E402
from ssd_zoo.train.model import model_to_evaluate  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def torchvision_file(ssdlite: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    build = torchvision_ssdlite if ssdlite else torchvision_ssd300
    return build(weights=None, weights_backbone=None, num_classes=91).state_dict()


# layout -> (the registered model its file fits, the file as its publisher's code saves it, its label space)
FILES = {
    "ssd.pytorch": ("ssd300_vgg16", lambda: ssd_pytorch_state_dict(21), VOC_CATEGORIES),  # torch.save(net.state_dict())
    "torchvision": ("ssd300_vgg16", lambda: torchvision_file(False), COCO_CATEGORIES),
    "torchvision-ssdlite": ("ssdlite320_mobilenet_v3_large", lambda: torchvision_file(True), COCO_CATEGORIES),
    "lufficc": ("lufficc_mobilenet_v2_ssd320", lambda: {"model": lufficc_state("mobilenet_v2")}, VOC_CATEGORIES),
    "qfgaohao": ("qfgaohao_mb2_ssd_lite", lambda: state_for("mb2-ssd-lite"), VOC_CATEGORIES),
    # their training under DDP: {"epoch", "iteration", "model": {"module.<key>": ...}}
    "nvidia": ("nvidia_ssd300_resnet50", lambda: {"epoch": 1, "iteration": 1, "model": {
        f"module.{k}": v for k, v in their_state_dict().items()}}, COCO80_CATEGORIES),
}


def write_voc(root: Path, names: list[str], images: list[torch.Tensor],
              truth: list[list[tuple[str, list[float]]]]) -> Path:
    """A VOCdevkit folder: classes.txt, VOC2007/{JPEGImages, Annotations, ImageSets/Main/test.txt}; ``truth``:
    per image ``(class name, [x0, y0, x1, y1] pixels, 0-based)``, written 1-based as VOC's XML is."""
    year = root / "VOC2007"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / folder).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    ids = [f"im{i}" for i in range(len(images))]
    for image_id, image, objects in zip(ids, images, truth):
        pixels = (image * 255).round().byte().permute(1, 2, 0).numpy()  # PNG bytes under VOC's .jpg name: exact
        Image.fromarray(pixels).save(year / "JPEGImages" / f"{image_id}.jpg", format="PNG")
        boxes = "".join(f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1:.0f}</xmin>"
                        f"<ymin>{y0 + 1:.0f}</ymin><xmax>{x1 + 1:.0f}</xmax><ymax>{y1 + 1:.0f}</ymax></bndbox></object>"
                        for name, (x0, y0, x1, y1) in objects)
        h, w = image.shape[-2:]
        (year / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{boxes}</annotation>")
    (year / "ImageSets/Main/test.txt").write_text("\n".join(ids) + "\n")
    return root


def small_photos(sample_images: list[torch.Tensor]) -> list[torch.Tensor]:
    """Two photos at 96 px wide, in 8-bit steps as the folder will hold them (the model sees what it reads)."""
    out = []
    for image in sample_images[:2]:
        h, w = image.shape[-2:]
        small = torch.nn.functional.interpolate(image[None], size=(round(96 * h / w), 96), mode="bilinear")[0]
        out.append((small.clamp(0, 1) * 255).round() / 255)
    return out


def truth_from(model: torch.nn.Module, images: list[torch.Tensor], names: list[str],
               per_image: int = 3) -> list[list[tuple[str, list[float]]]]:
    """The model's best ``per_image`` detections (of classes named in ``names``) as ground truth."""
    model.eval()
    with torch.no_grad():
        detections = model(images)
    truth = []
    for det in detections:
        keep = [i for i in det["scores"].argsort(descending=True).tolist()
                if model.categories[det["labels"][i]] in names][:per_image]
        truth.append([(model.categories[det["labels"][i]], det["boxes"][i].tolist()) for i in keep])
    return truth


def predictor_rows(model: torch.nn.Module) -> list[torch.Tensor]:
    state = model.state_dict()
    return [state[f"{name}.weight"].reshape(-1, model.num_classes, *state[f"{name}.weight"].shape[1:])
            for name in class_predictors(model)]


@pytest.mark.parametrize("layout", sorted(FILES))
def test_every_class_row_is_the_files_own(layout: str, tmp_path: Path) -> None:
    """eval_voc.py's model for the folder's classes (ssd_zoo.train.model.model_to_evaluate): each row is the directly built model's row of that name."""
    model_name, saved, space = FILES[layout]
    path = tmp_path / "publisher.pth"
    torch.save(saved(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClassNamesWarning)
        direct = ssd_zoo.load(path)
    assert direct.builder["name"] == model_name and convert.detect_layout(convert.unwrap(torch.load(path))) == layout
    names = [n for n in space[1:] if n != "N/A"]  # a VOC folder names each class once
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = model_to_evaluate(TrainConfig(model=model_name), str(path), names)
    said = [str(w.message) for w in caught if issubclass(w.category, (ClassNamesWarning, HeadSurgeryWarning))]
    assert len(said) == 1 and f"taken as the {layout} layout's label space" in said[0], said
    assert model.class_names == ["__background__", *names]
    rows = [0] + [space.index(n) for n in names]
    for got, want in zip(predictor_rows(model), predictor_rows(direct)):
        assert torch.equal(got, want[:, rows])


def eval_config(tmp_path: Path, model: str, root: Path) -> Path:
    config = tmp_path / "eval.yaml"
    config.write_text(f"model: {model}\ndata_root: {root}\ntest_split: 2007-test\nnum_workers: 0\n"
                      f"eval_batch_size: 2\ndevice: cpu\noutput_dir: {tmp_path / 'out'}\ndraw: 0\n")
    return config


def test_a_publisher_file_evaluates_as_the_model_built_directly(tmp_path: Path, sample_images) -> None:
    """qfgaohao's mb2-ssd-lite file (VOC, no names) through eval_voc.py: the direct model's per-class AP."""
    torch.save(state_for("mb2-ssd-lite", seed=4), tmp_path / "mb2.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClassNamesWarning)
        direct = ssd_zoo.load(tmp_path / "mb2.pth")
    images = small_photos(sample_images)
    names = VOC_CATEGORIES[1:]
    root = write_voc(tmp_path / "voc", names, images, truth_from(direct, images, names))
    config = eval_config(tmp_path, "qfgaohao_mb2_ssd_lite", root)
    with pytest.warns(ClassNamesWarning, match="taken as the qfgaohao layout's label space"):
        metrics = eval_voc.main(["--config", str(config), "--weights", str(tmp_path / "mb2.pth"), "--device", "cpu"])
    reference = eval_voc.evaluate_and_report(direct.eval(), eval_voc.test_loader(eval_voc.load_config(config)),
                                             torch.device("cpu"), False, tmp_path / "direct", 0, 0.5, {})
    assert metrics["ap"] == reference["ap"] and metrics["map_voc07"] > 0.5
    assert json.loads((tmp_path / "out/metrics.json").read_text())["ap"] == reference["ap"]


DEMO_KWARGS = {"anchors": "coco", "extra_channels": [16, 16, 16],
               "timm_kwargs": {"channels": [8, 8, 16, 16], "stem_width": 8}}


@pytest.mark.parametrize("with_names", [True, False])
def test_an_earlier_demo_checkpoint_evaluates_as_it_did(tmp_path: Path, sample_images, with_names: bool) -> None:
    """A train_voc.py checkpoint of an earlier ssd_zoo (no model record; its class names, when it saved them,
    next to the weights): eval_voc.py carries every row, as that version did (VOC07 mAP 17.9 instead of 91.6
    when the rows were re-initialised)."""
    torch.manual_seed(0)
    names = ["circle", "square", "triangle", "ellipse", "rectangle", "cross"]
    model = ssd_zoo.build("ssd", backbone="resnet18", input_size=64, num_classes=7, **DEMO_KWARGS)
    model.categories = ["__background__", *names]
    state = split_record(model.state_dict())[0]
    config = {"model": "ssd", "backbone": "resnet18", "input_size": 64, "model_kwargs": DEMO_KWARGS}
    checkpoint = {"model": state, "config": config, "iteration": 5, **({"class_names": names} if with_names else {})}
    torch.save(checkpoint, tmp_path / "best.pth")
    images = small_photos(sample_images)
    root = write_voc(tmp_path / "shapes", names, images, truth_from(model, images, names))
    settings = eval_config(tmp_path, "ssd", root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = eval_voc.main(["--config", str(settings), "--weights", str(tmp_path / "best.pth"), "--device", "cpu"])
    said = [str(w.message) for w in caught if issubclass(w.category, (ClassNamesWarning, HeadSurgeryWarning))]
    if with_names:
        assert said == []
    else:
        assert len(said) == 1 and "records no class names: its 6 classes are taken to be" in said[0] and \
            "in that order (label 1 = 'circle')" in said[0], said
    reference = eval_voc.evaluate_and_report(model.eval(), eval_voc.test_loader(eval_voc.load_config(settings)),
                                             torch.device("cpu"), False, tmp_path / "direct", 0, 0.5, {})
    assert metrics["ap"] == reference["ap"] and metrics["map_voc07"] > 0.5
