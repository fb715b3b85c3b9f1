"""PT2E int8 (ssd_zoo.deploy.quantize): the model's I/O contract kept, detections close to float32, clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import ssd_zoo
from ssd_zoo.models.vgg import CeilMaxPool2d
from ssd_zoo.deploy.quantize import quantize, read_calibration_images

pytest.importorskip("torchao")
pytest.importorskip("timm")

TINY = {"backbone": "resnet18", "input_size": 64, "anchors": "coco", "extra_channels": [16, 16, 16],
        "timm_kwargs": {"channels": [8, 8, 16, 16], "stem_width": 8}, "pretrained_backbone": False}


def tiny_model() -> ssd_zoo.SSD:
    """A small trained-looking SSD: random weights, heads scaled so that scores spread over the classes."""
    torch.manual_seed(0)
    model = ssd_zoo.build("ssd", num_classes=3, **TINY)
    with torch.no_grad():
        for conv in model.head.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight.mul_(0.3)
    model.categories = ["__background__", "circle", "square"]
    return model.eval()


@pytest.mark.parametrize("size", [75, 76, 9])
def test_ceil_max_pool_equals_ceil_mode(size: int) -> None:
    x = torch.randn(2, 4, size, size + 1)
    assert torch.equal(CeilMaxPool2d()(x), nn.MaxPool2d(2, 2, ceil_mode=True)(x))


def test_int8_keeps_contract_and_agrees_with_fp32(sample_images) -> None:
    model = tiny_model()
    qmodel = quantize(model, sample_images * 4, batch_size=4)  # lowered to oneDNN's int8 kernels
    assert qmodel is not model and qmodel.categories == model.categories and qmodel.record() == model.record()
    with torch.no_grad():
        ref, dense = model.dense_predictions(sample_images), qmodel.dense_predictions(sample_images)
        detections = qmodel(sample_images[:2])  # another batch size than calibration
    assert dense["scores"].shape == ref["scores"].shape and dense["boxes"].dtype == torch.float32
    # int8 of activations and weights: probabilities within a few hundredths, boxes within a pixel or two.
    assert (dense["scores"] - ref["scores"]).abs().mean() < 0.01
    assert (dense["boxes"] - ref["boxes"]).abs().median() < 1.0
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "scores", "labels"}
    # The oneDNN kernels compute what the reference graph (quantize/dequantize around float ops) says.
    reference = quantize(model, sample_images * 4, batch_size=4, compile=False)
    with torch.no_grad():
        torch.testing.assert_close(qmodel.dense_predictions(sample_images)["scores"],
                                   reference.dense_predictions(sample_images)["scores"], atol=2e-3, rtol=0)
    for image, det in zip(sample_images, detections):  # boxes in each image's own pixels
        assert det["boxes"][:, 2].max() <= image.shape[2] + 1e-3 and det["boxes"][:, 3].max() <= image.shape[1] + 1e-3


def test_keep_float_leaves_the_head_in_float(sample_images) -> None:
    model = tiny_model()
    qmodel = quantize(model, sample_images, keep_float=["head"], compile=False)
    assert qmodel.head.state_dict().keys() == model.head.state_dict().keys()
    with pytest.raises(ValueError, match="not modules of the model"):
        quantize(model, sample_images, keep_float=["heads"])


def test_calibration_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="found nothing at"):
        read_calibration_images(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no .jpg"):
        read_calibration_images(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg: not a readable image"):
        read_calibration_images(tmp_path)
    with pytest.raises(ValueError, match="found none"):
        quantize(tiny_model(), [])
