"""resize="letterbox": pads to a square (mean or pad_fill), maps boxes back exactly, is part of the model
record, and is what the demo's pad_to_square now builds (the same pixels the data transform gave)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import TINY_MODEL_KWARGS, tiny_model

import ssd_zoo
from ssd_zoo.data import PadToSquare
from ssd_zoo.transform import SSDTransform

def tiny(**kwargs: object) -> ssd_zoo.SSD:
    return tiny_model(**kwargs).eval()


def test_letterbox_pads_with_the_mean_and_keeps_the_aspect_ratio() -> None:
    transform = SSDTransform(64, resize="letterbox")
    image = torch.rand(3, 30, 60)
    batch = transform([image])
    assert batch.images.shape == (1, 3, 64, 64) and batch.original_sizes == [(30, 60)]
    assert batch.images[0, :, 33:, :].abs().max() < 1e-4  # padding: the mean, zero after normalisation
    assert batch.images[0, :, :31, :].abs().sum() > 0
    assert SSDTransform(64).resize_mode == "stretch"  # the default is unchanged
    with pytest.raises(ValueError, match="resize='crop': expected one of"):
        SSDTransform(64, resize="crop")


def test_letterbox_maps_boxes_there_and_back_exactly() -> None:
    transform = SSDTransform(300, resize="letterbox")
    sizes = [(375, 500), (640, 427), (200, 200)]
    boxes = [torch.tensor([[10.0, 20.0, 490.0, 370.0], [0.5, 1.5, 3.25, 7.0]]),
             torch.tensor([[0.0, 0.0, 427.0, 640.0]]), torch.tensor([[50.0, 60.0, 70.0, 80.0]])]
    targets = transform.pad_targets([{"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64)} for b in boxes],
                                    sizes, torch.device("cpu"))
    for i, (h, w) in enumerate(sizes):  # one factor for both axes: S / max(H, W)
        scale = 300 / max(h, w)
        assert torch.allclose(targets.boxes[i, :len(boxes[i])], boxes[i] * scale, rtol=1e-6)
    back = transform.postprocess([{"boxes": targets.boxes[i, :len(b)]} for i, b in enumerate(boxes)], sizes)
    for original, mapped in zip(boxes, back):
        assert torch.allclose(mapped["boxes"], original, atol=1e-4)


def test_model_detections_are_in_image_pixels_and_inside_the_image() -> None:
    model = tiny(resize="letterbox", score_thresh=0.0)
    (det,) = model([torch.rand(3, 40, 100)])
    assert len(det["boxes"]) and det["boxes"][:, 2].max() <= 100 and det["boxes"][:, 3].max() <= 40


def test_the_record_remembers_letterbox(tmp_path: Path) -> None:
    model = tiny(resize="letterbox", pad_fill=(0.5, 0.5, 0.5))
    assert model.record()["resize"] == "letterbox" and model.record()["pad_fill"] == [0.5, 0.5, 0.5]
    torch.save({"model": model.state_dict()}, tmp_path / "m.pth")
    again = ssd_zoo.build("ssd", weights=str(tmp_path / "m.pth"), backbone="resnet18", **TINY_MODEL_KWARGS)
    assert again.transform.resize_mode == "letterbox" and again.transform.pad_fill == [0.5, 0.5, 0.5]
    stretched = tiny()
    with pytest.raises(ValueError, match="trained with resize='letterbox', but this model has resize='stretch'"):
        stretched.load_state_dict(model.state_dict())


def test_pad_to_square_builds_a_letterboxing_model_that_sees_the_same_pixels() -> None:
    """The demo's pad_to_square: training images are still padded by the data (before flips, as always); test
    images now reach the model unpadded and its letterbox gives the pixels the data transform gave."""
    from ssd_zoo.train.config import TrainConfig
    from ssd_zoo.train.model import PAD_FILL, build_model

    cfg = TrainConfig(model="ssd", backbone="resnet18", input_size=64, pad_to_square=True,
                      model_kwargs=TINY_MODEL_KWARGS)
    torch.manual_seed(0)
    model = build_model(cfg, 3).eval()
    assert model.transform.resize_mode == "letterbox"
    image = torch.rand(3, 50, 80)
    padded, _ = PadToSquare(PAD_FILL)(image, {})
    with torch.inference_mode():
        raw, old = model.dense_predictions([image]), model.dense_predictions([padded])
    assert torch.equal(raw["scores"], old["scores"]) and torch.equal(raw["boxes"], old["boxes"])
    with torch.inference_mode():
        (a,), (b,) = model([image]), model([padded])
    inside = b["boxes"].clone()  # the old path clipped to the padded square; the image ends at 80 x 50
    inside[:, 0::2] = inside[:, 0::2].clamp(0, 80)
    inside[:, 1::2] = inside[:, 1::2].clamp(0, 50)
    assert torch.equal(a["scores"], b["scores"]) and torch.allclose(a["boxes"], inside)
