"""Dataset-side transforms that are not augmentation: ``(image, target) -> (image, target)``, deterministic."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors


class PadToSquare:
    """Pad an image at the bottom and right to a square of its longer side, filled with ``fill`` (RGB, 0..1).

    SSD's transform stretches every image to a square, which changes the shapes' aspect ratios by the
    image's (up to 352:256 in the shapes dataset, enough to make a circle look like an ellipse). Padding
    first makes the stretch uniform; boxes keep their coordinates, so detections need no correction.
    """

    def __init__(self, fill: Sequence[float]) -> None:
        self.fill = torch.tensor([float(f) for f in fill]).view(3, 1, 1)

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        """``image`` float ``[3, H, W]`` -> ``[3, S, S]`` with ``S = max(H, W)``; boxes keep their coordinates.

        A ``tv_tensors.Image`` stays one, and ``tv_tensors.BoundingBoxes`` get the new ``canvas_size`` ``(S, S)``
        (so that a v2 transform after this one, e.g. a flip, sees the padded canvas); plain tensors stay plain.
        """
        height, width = image.shape[-2:]
        side = max(height, width)
        canvas = self.fill.to(image.dtype).expand(3, side, side).clone()
        canvas[:, :height, :width] = image
        if isinstance(image, tv_tensors.Image):
            canvas = tv_tensors.Image(canvas)
        boxes = target.get("boxes")
        if isinstance(boxes, tv_tensors.BoundingBoxes):
            target = dict(target, boxes=tv_tensors.wrap(boxes, like=boxes, canvas_size=(side, side)))
        return canvas, target
