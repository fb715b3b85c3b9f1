"""Matching default boxes to ground truth (SSD paper, sec. 2.2 "Matching strategy").

Every default box takes the ground-truth box it overlaps most, if that IoU reaches ``iou_thresh``;
then every ground-truth box claims its own best default box, whatever the IoU, so that no object goes
unmatched. The whole batch is matched at once on padded ground truth.
"""
from __future__ import annotations

import torch
from torch import Tensor

BACKGROUND = -1


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU, batched: ``[B, N, 4]`` and ``[M, 4]`` (or ``[B, M, 4]``) xyxy -> ``[B, N, M]``."""
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    top_left = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[..., :, None] + area2[..., None, :] - inter)


def match(gt_boxes: Tensor, gt_valid: Tensor, default_boxes: Tensor, iou_thresh: float = 0.5) -> Tensor:
    """Assign each default box a ground-truth index, or ``BACKGROUND`` (-1).

    Args:
        gt_boxes: ``[B, G, 4]`` xyxy pixels, padded to the batch's largest ``G``.
        gt_valid: ``[B, G]`` bool, False on padding.
        default_boxes: ``[A, 4]`` xyxy pixels.
        iou_thresh: minimum IoU for a default box to match (0.5 in the paper).

    Returns:
        ``[B, A]`` int64: an index into ``G`` for matched default boxes, -1 for background.
    """
    batch, num_gt = gt_valid.shape
    iou = box_iou(gt_boxes, default_boxes).masked_fill(~gt_valid[..., None], -1.0)  # (B, G, A)
    if num_gt == 0:
        return torch.full((batch, default_boxes.shape[0]), BACKGROUND, dtype=torch.int64, device=gt_boxes.device)
    best_iou, matches = iou.max(dim=1)  # (B, A): best ground truth per default box
    matches = matches.masked_fill(best_iou < iou_thresh, BACKGROUND)

    # Each ground-truth box forces its best default box; when two share one, the later box wins (as torchvision).
    best_default = iou.argmax(dim=2)  # (B, G)
    gt_index = torch.arange(num_gt, device=gt_boxes.device).expand(batch, -1)
    forced = torch.full_like(matches, BACKGROUND)
    forced.scatter_reduce_(1, best_default, gt_index.masked_fill(~gt_valid, BACKGROUND), reduce="amax")
    return torch.where(forced >= 0, forced, matches)
