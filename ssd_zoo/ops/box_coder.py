"""Box coding: ground-truth boxes as offsets from their default boxes (SSD paper, eq. 2).

A box ``(cx, cy, w, h)`` is coded against a default box ``(dcx, dcy, dw, dh)`` as
``((cx - dcx) / (v0 * dw), (cy - dcy) / (v0 * dh), log(w / dw) / v1, log(h / dh) / v1)`` with the
"variances" ``v0 = 0.1`` and ``v1 = 0.2`` of Caffe SSD — torchvision's ``BoxCoder(weights=(10, 10, 5, 5))``.
All boxes are xyxy; any leading batch dimensions broadcast.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

VARIANCES = (0.1, 0.2)
# Caps exp() of the decoded log-size, as torchvision does, so a wild regression cannot overflow.
_MAX_LOG_SIZE = math.log(1000.0 / 16)


def _centres_sizes(boxes: Tensor) -> tuple[Tensor, Tensor]:
    sizes = boxes[..., 2:] - boxes[..., :2]
    return boxes[..., :2] + 0.5 * sizes, sizes


def encode(boxes: Tensor, default_boxes: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """``boxes`` ``[..., 4]`` xyxy -> regression targets ``[..., 4]`` against ``default_boxes`` ``[..., 4]`` xyxy."""
    centres, sizes = _centres_sizes(boxes)
    d_centres, d_sizes = _centres_sizes(default_boxes)
    offsets = (centres - d_centres) / (variances[0] * d_sizes)
    scales = torch.log(sizes / d_sizes) / variances[1]
    return torch.cat([offsets, scales], dim=-1)


def decode(regression: Tensor, default_boxes: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Inverse of :func:`encode`: regression ``[..., 4]`` + default boxes ``[..., 4]`` -> boxes ``[..., 4]`` xyxy."""
    d_centres, d_sizes = _centres_sizes(default_boxes)
    centres = d_centres + regression[..., :2] * variances[0] * d_sizes
    sizes = torch.exp((regression[..., 2:] * variances[1]).clamp(max=_MAX_LOG_SIZE)) * d_sizes
    return torch.cat([centres - 0.5 * sizes, centres + 0.5 * sizes], dim=-1)
