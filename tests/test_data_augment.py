"""SSDAugmentation keeps targets valid; collate keeps ragged targets apart."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors

from ssd_zoo.data.augment import SSDAugmentation, collate, to_device

AUGMENT = SSDAugmentation()


@st.composite
def samples(draw):
    height, width = draw(st.integers(4, 48)), draw(st.integers(4, 48))
    n = draw(st.integers(0, 5))
    boxes = []
    for _ in range(n):
        x1, y1 = draw(st.floats(0, width - 1)), draw(st.floats(0, height - 1))
        x2, y2 = draw(st.floats(x1 + 1, width)), draw(st.floats(y1 + 1, height))
        boxes.append([x1, y1, x2, y2])
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.arange(1, n + 1),
        "difficult": torch.tensor([i % 2 == 1 for i in range(n)], dtype=torch.bool),
        "image_id": "img",
    }
    return torch.rand(3, height, width), target, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=60, deadline=None)
@given(samples())
def test_boxes_stay_inside_and_non_degenerate(sample):
    image, target, seed = sample
    torch.manual_seed(seed)
    out_image, out = AUGMENT(image, dict(target))
    # A v2 transform: torchvision's types out, the boxes' canvas the new image.
    assert isinstance(out_image, tv_tensors.Image) and isinstance(out["boxes"], tv_tensors.BoundingBoxes)
    assert out["boxes"].canvas_size == tuple(out_image.shape[-2:]) and out["boxes"].format.name == "XYXY"
    assert out_image.dtype == torch.float32 and out_image.shape[0] == 3
    assert 0.0 <= out_image.min() and out_image.max() <= 1.0
    height, width = out_image.shape[-2:]
    boxes = out["boxes"]
    assert boxes.shape == (len(out["labels"]), 4) == (len(out["difficult"]), 4)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    # Each surviving box keeps its own label and difficult flag (labels are 1..n, odd are difficult).
    assert out["difficult"].tolist() == [label % 2 == 0 for label in out["labels"].tolist()]
    assert out["image_id"] == "img"


def test_zoom_out_fills_with_the_mean_and_shifts_boxes():
    augment = SSDAugmentation(
        fill=(0.25, 0.5, 0.75), zoom_out_p=1.0, hflip_p=0.0, photometric_p=0.0, iou_crop=False
    )
    image = torch.zeros(3, 10, 10)
    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}
    torch.manual_seed(0)
    out_image, out = augment(image, target)
    assert out_image.shape[-1] > 10
    x1, y1, x2, y2 = out["boxes"][0].int().tolist()
    assert (x2 - x1, y2 - y1) == (10, 10)
    assert out_image[:, y1:y2, x1:x2].abs().max() == 0  # the image itself
    canvas = out_image.clone()
    canvas[:, y1:y2, x1:x2] = torch.tensor([0.25, 0.5, 0.75])[:, None, None]
    assert torch.allclose(canvas, torch.tensor([0.25, 0.5, 0.75])[:, None, None].expand_as(canvas))


def test_collate_keeps_ragged_targets():
    batch = [
        (torch.rand(3, 8, 9), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}),
        (torch.rand(3, 5, 7), {"boxes": torch.ones(2, 4), "labels": torch.ones(2, dtype=torch.int64)}),
    ]
    images, targets = collate(batch)
    assert [tuple(i.shape) for i in images] == [(3, 8, 9), (3, 5, 7)]
    assert [len(t["boxes"]) for t in targets] == [0, 2]
    moved = to_device([dict(targets[1], image_id="a")], "cpu")
    assert moved[0]["image_id"] == "a" and moved[0]["labels"].tolist() == [1, 1]
