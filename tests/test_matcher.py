"""Matching: threshold, forced best match, padding and empty targets."""
from __future__ import annotations

import torch

from ssd_zoo.ops.matcher import box_iou, match

DEFAULTS = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20], [100, 100, 110, 110]])


def test_box_iou_matches_torchvision() -> None:
    from torchvision.ops import box_iou as tv_box_iou

    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 20]])
    torch.testing.assert_close(box_iou(a[None], DEFAULTS)[0], tv_box_iou(a, DEFAULTS))


def test_threshold_and_forced_best_match() -> None:
    gt = torch.tensor([[[0.0, 0, 10, 10], [10, 0, 21, 10], [95, 95, 105, 105]]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    matches = match(gt, valid, DEFAULTS, 0.5)
    # default 0: IoU 1 with gt 0; default 1: IoU 10/11 with gt 1; default 3: IoU 1/7 < 0.5, but gt 2's best (forced).
    assert matches.tolist() == [[0, 1, -1, 2]]


def test_forced_match_below_threshold() -> None:
    gt = torch.tensor([[[0.0, 0, 30, 30]]])  # IoU with default 0 is 100/900 < 0.5
    matches = match(gt, torch.ones(1, 1, dtype=torch.bool), DEFAULTS, 0.5)
    assert matches[0, 0] == 0 and (matches[0, 1:] == -1).all()


def test_padding_is_never_matched_and_empty_batch() -> None:
    gt = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 10]], [[0, 0, 0, 0], [0, 0, 0, 0]]])
    valid = torch.tensor([[True, False], [False, False]])
    matches = match(gt, valid, DEFAULTS, 0.5)
    assert matches[0].tolist() == [0, -1, -1, -1]
    assert (matches[1] == -1).all()
    empty = match(torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool), DEFAULTS, 0.5)
    assert empty.shape == (2, 4) and (empty == -1).all()


def test_two_boxes_sharing_a_best_default_box_the_later_wins() -> None:
    gt = torch.tensor([[[0.0, 0, 10, 9], [0, 0, 9, 10]]])  # both best at default 0
    matches = match(gt, torch.ones(1, 2, dtype=torch.bool), DEFAULTS, 0.95)
    assert matches[0, 0] == 1
