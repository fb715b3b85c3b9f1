"""Dataset-side transforms that are not augmentation: ``(image, target) -> (image, target)``, deterministic."""
from __future__ import annotations

from collections.abc import Sequence

import torch


class PadToSquare:
    """Pad an image at the bottom and right to a square of its longer side, filled with ``fill`` (RGB, 0..1).

    SSD's transform stretches every image to a square, which changes the shapes' aspect ratios by the
    image's (up to 352:256 in the shapes dataset, enough to make a circle look like an ellipse). Padding
    first makes the stretch uniform; boxes keep their coordinates, so detections need no correction.
    """

    def __init__(self, fill: Sequence[float]) -> None:
        self.fill = torch.tensor([float(f) for f in fill]).view(3, 1, 1)

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        """``image`` float ``[3, H, W]`` -> ``[3, S, S]`` with ``S = max(H, W)``; ``target`` unchanged."""
        height, width = image.shape[-2:]
        side = max(height, width)
        canvas = self.fill.to(image.dtype).expand(3, side, side).clone()
        canvas[:, :height, :width] = image
        return canvas, target
