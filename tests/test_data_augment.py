"""SSDAugmentation keeps targets valid; collate keeps ragged targets apart."""

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors

from ssd_zoo.data.augment import SSDAugmentation, collate, to_device

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the recipes package

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


@settings(max_examples=60, deadline=None, derandomize=True)
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


# --- the same samples as before the datasets spoke tv_tensors (the demo's mAP depends on them) -------------------
# Numbers from SSDAugmentation at commit f309af7 (plain tensors in and out), same seeds, same samples:
# (seed, output shape, boxes, labels, image sum, column-weighted image sum).
GOLDEN_FULL = [
    (0, (3, 35, 60), [[2, 0, 20, 27], [30, 2, 50, 35], [10, 7, 12, 9.5]], [1, 2, 3], 3479.45, 101370.5),
    (1, (3, 23, 17), [[0, 0, 17, 22]], [2], 615.52, 4930.8),
    (3, (3, 40, 56), [[2, 3, 20, 30], [30, 5, 50, 38], [10, 10, 12, 12.5]], [1, 2, 3], 2997.66, 82465.3),
    (6, (3, 40, 56), [[36, 3, 54, 30], [6, 5, 26, 38], [44, 10, 46, 12.5]], [1, 2, 3], 3325.91, 91378.9),
    (7, (3, 142, 199), [[57, 59, 75, 86], [27, 61, 47, 94], [65, 66, 67, 68.5]], [1, 2, 3], 38313.18, 3780314.8),
    (9, (3, 128, 93), [[6, 11, 26, 44]], [2], 16211.77, 740370.0),
]
# The demo's pipeline (recipes/configs/shapes_quick.yaml: pad to square, flips only) through the recipe's
# SeededAugmentation, seed 0: (epoch, index, shape, boxes, image sum, column-weighted sum).
GOLDEN_DEMO = [
    (0, 0, (3, 48, 48), [[29, 3, 46, 24], [40, 0, 48, 11]], 3456.0, 81202.4),
    (0, 1, (3, 44, 44), [[24, 3, 41, 24], [36, 0, 44, 11]], 2846.635, 60758.1),
    (0, 2, (3, 40, 40), [[19, 3, 36, 24], [32, 0, 40, 11]], 2396.988, 46720.4),
    (1, 2, (3, 40, 40), [[4, 3, 21, 24], [0, 0, 8, 11]], 2396.988, 46762.2),
]


def golden_sample():
    image = torch.arange(3 * 40 * 56, dtype=torch.float32).reshape(3, 40, 56) * 0.37 % 1.0
    target = {"boxes": torch.tensor([[2.0, 3.0, 20.0, 30.0], [30.0, 5.0, 50.0, 38.0], [10.0, 10.0, 12.0, 12.5]]),
              "labels": torch.tensor([1, 2, 3]), "difficult": torch.tensor([False, True, False])}
    return image, target


def sums(image):
    image = image.double()
    return float(image.sum()), float((image * torch.arange(image.shape[-1])).sum())


def check_golden(image, target, shape, boxes, image_sum, weighted_sum):
    assert tuple(image.shape) == shape
    assert torch.allclose(target["boxes"].float(), torch.tensor(boxes, dtype=torch.float32), atol=1e-3)
    assert sums(image) == pytest.approx((image_sum, weighted_sum), rel=1e-5, abs=0.02)


@pytest.mark.parametrize("as_tv_tensors", [False, True], ids=["plain", "tv_tensors"])
def test_same_draws_as_before_for_a_seed(as_tv_tensors):
    for seed, shape, boxes, labels, image_sum, weighted_sum in GOLDEN_FULL:
        image, target = golden_sample()
        if as_tv_tensors:
            image = tv_tensors.Image(image)
            target["boxes"] = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(40, 56))
            target["image_id"] = torch.tensor(5)
        torch.manual_seed(seed)
        out_image, out = AUGMENT(image, target)
        check_golden(out_image, out, shape, boxes, image_sum, weighted_sum)
        assert out["labels"].tolist() == labels and out["difficult"].tolist() == [label == 2 for label in labels]


def write_png_voc(root):
    """Three PNG images (lossless: pinned pixel sums) of 48x32, 30x44 and 40x40 px, classes 'a' and 'b'."""
    year = root / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / sub).mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate([(48, 32), (30, 44), (40, 40)]):
        pixels = (torch.arange(h * w * 3).reshape(h, w, 3) * (7 + i) % 256).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(year / "JPEGImages" / f"im{i}.png")
        objects = [("a", (3 + i, 4, 20 + i, 25), 0), ("b", (10, 2 + i, 28, 30), 1), ("a", (1, 1, 9, 12), 0)]
        body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}"
                       f"</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
                       for n, (x1, y1, x2, y2), d in objects)
        (year / "Annotations" / f"im{i}.xml").write_text(f"<annotation><filename>im{i}.png</filename>{body}</annotation>")
    (year / "ImageSets/Main/trainval.txt").write_text("im0\nim1\nim2\n")
    return root


def test_demo_pipeline_gives_the_same_samples_as_before(tmp_path):
    from ssd_zoo.train.config import TrainConfig
    from ssd_zoo.train.data import SeededAugmentation, make_dataset

    cfg = TrainConfig(data_root=str(write_png_voc(tmp_path)), train_splits="2007-trainval", class_names=["a", "b"],
                      pad_to_square=True, augment={"zoom_out": 1.0, "iou_crop": False, "photometric_p": 0.0})
    augment = SSDAugmentation(fill=(0.485, 0.456, 0.406), **cfg.augment)
    seeded = SeededAugmentation(make_dataset(cfg, train=True), augment, seed=0)
    for epoch, index, shape, boxes, image_sum, weighted_sum in GOLDEN_DEMO:
        seeded.epoch = epoch
        image, target = seeded[index]
        check_golden(image, target, shape, boxes, image_sum, weighted_sum)
        assert target["boxes"].canvas_size == shape[1:]  # the padded square, which the flip mirrored in
