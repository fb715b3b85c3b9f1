"""Golden default boxes: counts, first/last boxes from the paper's formula, and parity with torchvision."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator as TorchvisionDefaultBoxes
from torchvision.models.detection.image_list import ImageList

from ssd_zoo.ops.default_boxes import default_boxes, preset

GRIDS = {300: [38, 19, 10, 5, 3, 1], 512: [64, 32, 16, 8, 4, 2, 1]}


def boxes_for(size: int, anchors: str) -> torch.Tensor:
    return default_boxes(preset(size, anchors), [(g, g) for g in GRIDS[size]], (size, size))


@pytest.mark.parametrize("size,anchors,count", [(300, "voc", 8732), (300, "coco", 8732), (512, "voc", 24564), (512, "coco", 24564)])
def test_counts(size: int, anchors: str, count: int) -> None:
    assert boxes_for(size, anchors).shape == (count, 4)


# First box: the small square at the first cell of the first map, centred at step / 2.
# Last box: the last map's single cell, last shape = the transposed ratio-2 box, its height clipped to the image.
@pytest.mark.parametrize(
    "size,anchors,min_first,min_last",
    [(300, "voc", 30, 264), (300, "coco", 21, 261), (512, "voc", 35.84, 460.8), (512, "coco", 20.48, 460.8)],
)
def test_first_and_last_boxes(size: int, anchors: str, min_first: float, min_last: float) -> None:
    boxes = boxes_for(size, anchors)
    centre = 4.0  # step 8 / 2
    torch.testing.assert_close(boxes[0], torch.tensor([centre - min_first / 2, centre - min_first / 2,
                                                       centre + min_first / 2, centre + min_first / 2]))
    half_w = min_last / math.sqrt(2) / 2
    half_h = min(min_last * math.sqrt(2), size) / 2
    c = size / 2
    torch.testing.assert_close(boxes[-1], torch.tensor([c - half_w, c - half_h, c + half_w, c + half_h]))


def test_second_square_uses_the_next_size() -> None:
    boxes = boxes_for(300, "voc")
    side = math.sqrt(30 * 60)
    torch.testing.assert_close(boxes[1], torch.tensor([4 - side / 2, 4 - side / 2, 4 + side / 2, 4 + side / 2]))


def test_voc_preset_matches_ssd_pytorch_prior_box() -> None:
    """ssd.pytorch's PriorBox, written out as its loops (normalised cx, cy, w, h, clipped to [0, 1])."""
    cfg_min, cfg_max = [30, 60, 111, 162, 213, 264], [60, 111, 162, 213, 264, 315]
    ratios, steps = [[2], [2, 3], [2, 3], [2, 3], [2], [2]], [8, 16, 32, 64, 100, 300]
    priors = []
    for k, f in enumerate(GRIDS[300]):
        for i in range(f):
            for j in range(f):
                f_k = 300 / steps[k]
                cx, cy = (j + 0.5) / f_k, (i + 0.5) / f_k
                s_k = cfg_min[k] / 300
                priors.append([cx, cy, s_k, s_k])
                s = math.sqrt(s_k * cfg_max[k] / 300)
                priors.append([cx, cy, s, s])
                for ar in ratios[k]:
                    priors.append([cx, cy, s_k * math.sqrt(ar), s_k / math.sqrt(ar)])
                    priors.append([cx, cy, s_k / math.sqrt(ar), s_k * math.sqrt(ar)])
    p = torch.tensor(priors).clamp(0, 1)
    expected = torch.cat([p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2], 1) * 300
    torch.testing.assert_close(boxes_for(300, "voc"), expected, atol=1e-4, rtol=0)


def test_coco_preset_matches_torchvision() -> None:
    tv = TorchvisionDefaultBoxes([[2], [2, 3], [2, 3], [2, 3], [2], [2]], scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
                                 steps=[8, 16, 32, 64, 100, 300])
    features = [torch.zeros(1, 1, g, g) for g in GRIDS[300]]
    expected = tv(ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)]), features)[0]
    torch.testing.assert_close(boxes_for(300, "coco"), expected, atol=1e-4, rtol=0)


def test_unknown_preset_is_rejected() -> None:
    with pytest.raises(ValueError, match="'voc' or 'coco'"):
        preset(300, "imagenet")
