"""Every registered model builds, takes one training step on the CPU and returns well-formed detections.

Parametrised over ``ssd_zoo.list_models()``, so a newly registered model is tested without touching this file.
Images are small (the transform resizes them to the model's input size anyway) and there are 5 classes, so
the head and the post-processing stay cheap; each model is built once a session (conftest.built), shared with
test_compile.py and test_surgery.py. Models with BatchNorm train on 2 images (BatchNorm in training
mode needs more than one value per channel, and the last SSD map is 1x1); the others (VGG16) on 1.
"""
from __future__ import annotations

import pytest
import torch
from helpers import BUILD_KWARGS, NUM_CLASSES
from torch import nn

import ssd_zoo

NAMED_VARIANTS = {
    "ssd300_vgg16", "ssd512_vgg16", "ssd300_resnet18", "ssd300_resnet50", "ssd512_resnet50", "ssd300_mobilenetv2",
    "ssd300_mobilenetv3_large", "ssdlite320_mobilenetv2", "ssdlite320_mobilenetv3_large", "ssd300_efficientnet_b3",
    "ssd300_convnext_tiny",
}
def test_named_variants_are_registered() -> None:
    missing = (NAMED_VARIANTS | set(BUILD_KWARGS)) - set(ssd_zoo.list_models())
    assert not missing, f"not registered: {sorted(missing)}"


def test_list_models_filters_with_a_pattern() -> None:
    mobilenets = ssd_zoo.list_models("*mobilenet*")
    assert mobilenets == sorted(n for n in ssd_zoo.list_models() if "mobilenet" in n)
    assert {"ssd300_mobilenetv3_large", "ssdlite320_mobilenetv3_large", "ssdlite320_mobilenetv2"} <= set(mobilenets)
    assert ssd_zoo.list_models("ssd512*") == ["ssd512", "ssd512_resnet50", "ssd512_vgg16"]


def _train_step(model: ssd_zoo.SSD) -> None:
    model.train()
    images = [torch.rand(3, 48, 64), torch.rand(3, 40, 40)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0], [30.0, 20.0, 60.0, 46.0]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # an image without objects
    ]
    batch = 2 if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) else 1
    losses = model(images[:batch], targets[:batch])
    assert set(losses) == {"bbox_regression", "classification"}
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), f"{key} = {value}"
    sum(losses.values()).backward()
    name, first = next(model.backbone.named_parameters())
    assert first.grad is not None, f"no gradient reached the first backbone layer ({name})"
    assert torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0, f"gradient of {name} is zero or not finite"


def _check_detections(model: ssd_zoo.SSD) -> None:
    model.eval()
    sizes = [(40, 56)]
    with torch.no_grad():
        detections = model([torch.rand(3, h, w) for h, w in sizes])
    assert isinstance(detections, list) and len(detections) == len(sizes)
    for det, (h, w) in zip(detections, sizes):
        assert set(det) == {"boxes", "scores", "labels"}
        count = det["boxes"].shape[0]
        assert 0 < count <= model.detections_per_img  # random weights: every class scores about 1/3
        assert det["boxes"].shape == (count, 4) and det["scores"].shape == (count,) and det["labels"].shape == (count,)
        assert det["labels"].dtype == torch.int64
        assert ((det["labels"] >= 1) & (det["labels"] < NUM_CLASSES)).all()
        assert ((det["scores"] > model.score_thresh) & (det["scores"] <= 1)).all()
        boxes = det["boxes"]
        assert torch.isfinite(boxes).all()
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w + 1e-3).all() and (boxes[:, 3] <= h + 1e-3).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()


@pytest.mark.parametrize("name", ssd_zoo.list_models())
def test_registered_model_trains_and_detects(name: str, built) -> None:
    torch.manual_seed(0)
    model = built(name, num_classes=NUM_CLASSES, **BUILD_KWARGS.get(name, {}))
    assert isinstance(model, ssd_zoo.SSD) and model.num_classes == NUM_CLASSES
    _train_step(model)
    _check_detections(model)


@pytest.mark.parametrize("name", ssd_zoo.list_models())
def test_a_saved_state_dict_rebuilds_the_same_model(name: str, tmp_path, built) -> None:
    """A plain state_dict() carries the default boxes, input size, normalisation and classes it needs."""
    if "vgg" not in name:
        pytest.importorskip("timm")
    kwargs = dict(BUILD_KWARGS.get(name, {}))
    source = built(name, num_classes=NUM_CLASSES, **kwargs)
    source.categories = ["__background__", "cat", "dog", "bird", "fox"]
    torch.save(source.state_dict(), tmp_path / "model.pth")
    kwargs.pop("input_size", None)  # the file says
    loaded = ssd_zoo.build(name, weights=tmp_path / "model.pth", **kwargs)
    assert loaded.default_boxes.spec == source.default_boxes.spec and loaded.input_size == source.input_size
    assert torch.equal(loaded.transform.mean, source.transform.mean) and torch.equal(loaded.transform.std, source.transform.std)
    assert loaded.num_classes == NUM_CLASSES and loaded.categories == source.categories
