"""SSD's training augmentation on ``torchvision.transforms.v2``; a collate for detection batches.

The paper's recipe (Liu et al. 2016, section 2.2 and 3.6), in order:

1. photometric distortion (brightness, contrast, saturation, hue, channel swap);
2. zoom out: place the image on a canvas up to 4x its size filled with the mean colour, which
   creates small objects ("expansion");
3. random crop whose IoU with some object is at least one of {0.1, 0.3, 0.5, 0.7, 0.9} (or any,
   or no crop), keeping boxes whose centre lies in the crop;
4. horizontal flip;
5. drop boxes the crop left empty (``SanitizeBoundingBoxes``), together with their labels,
   ``difficult`` flags and any other per-box entry (``labels_getter=per_box_entries``).

Resizing to the network's input size is not done here: the model's transform does it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms import v2

from ssd_zoo.data.common import per_box_entries
from ssd_zoo.transform import IMAGENET_MEAN


def _marked(sample: Any) -> Any:
    """``(image, target)`` with a plain image tensor and plain ``target["boxes"]`` (this transform's calling
    convention before the datasets returned tv_tensors) -> the same in tv_tensors; anything else unchanged."""
    if not (isinstance(sample, tuple) and len(sample) == 2 and isinstance(sample[1], dict)):
        return sample
    image, target = sample
    if isinstance(image, Tensor) and not isinstance(image, tv_tensors.TVTensor):
        image = tv_tensors.Image(image)
    boxes = target.get("boxes")
    if isinstance(boxes, Tensor) and not isinstance(boxes, tv_tensors.TVTensor):
        canvas = tuple(int(s) for s in image.shape[-2:]) if isinstance(image, Tensor) else image.size[::-1]
        target = dict(target, boxes=tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=canvas))
    return image, target


class SSDAugmentation(v2.Transform):
    """SSD's training augmentation, a ``torchvision.transforms.v2`` transform: ``(image, target) -> (image, target)``.

    Args:
        fill: the zoom-out canvas colour, RGB in ``[0, 1]``; use the model's normalisation mean so
            the canvas becomes zero after normalising.
        zoom_out: the largest zoom-out factor (the paper's 4); 1 disables it.
        zoom_out_p: probability of zooming out.
        hflip_p: probability of a horizontal flip.
        photometric_p: probability of each photometric distortion.
        iou_crop: apply the paper's min-IoU random crop.

    Input and output follow the datasets' format (``ssd_zoo.data.common``): ``image`` a ``tv_tensors.Image``
    float32 ``[3, H, W]`` in ``[0, 1]``; ``target`` with ``boxes`` a ``tv_tensors.BoundingBoxes`` ``[N, 4]``,
    ``labels`` int64 ``[N]`` and optionally ``difficult`` bool ``[N]``, ``area``/``iscrowd`` ``[N]`` (filtered
    alongside the boxes) and anything else (``image_id``, ...) passed through unchanged. As any v2
    transform it also takes other sample structures (a dict, ``v2.Compose([..., SSDAugmentation()])``), and
    plain tensors for ``image`` and ``target["boxes"]`` (then taken as XYXY pixels of that image). The output
    image (float, clamped to ``[0, 1]``) has a new size; every output box lies inside it with positive width
    and height. Randomness comes from torch's global generator (seed it with ``torch.manual_seed``).
    """

    def __init__(
        self,
        fill: Sequence[float] = IMAGENET_MEAN,
        *,
        zoom_out: float = 4.0,
        zoom_out_p: float = 0.5,
        hflip_p: float = 0.5,
        photometric_p: float = 0.5,
        iou_crop: bool = True,
    ) -> None:
        super().__init__()
        self.fill = tuple(float(f) for f in fill)
        self.zoom_out = zoom_out
        head = [v2.RandomPhotometricDistort(p=photometric_p)]
        if zoom_out > 1.0:
            canvas_fill = {tv_tensors.Image: self.fill, "others": 0}
            zoom = v2.RandomZoomOut(fill=canvas_fill, side_range=(1.0, zoom_out), p=zoom_out_p)
            head.append(zoom)
        tail = [
            v2.RandomHorizontalFlip(p=hflip_p),
            v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(labels_getter=per_box_entries),
        ]
        crop = [v2.RandomIoUCrop()] if iou_crop else []
        self.with_boxes = v2.Compose([*head, *crop, *tail])
        # RandomIoUCrop needs a box to aim at; without one it only spins until "no crop" is drawn.
        self.without_boxes = v2.Compose([*head, *tail])

    def forward(self, *inputs: Any) -> Any:
        sample = _marked(inputs if len(inputs) > 1 else inputs[0])
        flat, spec = tree_flatten(sample)
        boxes = next((x for x in flat if isinstance(x, tv_tensors.BoundingBoxes)), None)
        pipeline = self.with_boxes if boxes is not None and len(boxes) else self.without_boxes
        flat, spec = tree_flatten(pipeline(sample))
        # Photometric distortions may leave float images slightly outside [0, 1].
        flat = [tv_tensors.wrap(x.as_subclass(Tensor).clamp_(0.0, 1.0), like=x)
                if isinstance(x, tv_tensors.Image) and x.is_floating_point() else x for x in flat]
        return tree_unflatten(flat, spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fill={self.fill}, pipeline={self.with_boxes})"


def collate(batch: Sequence[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """Collate ``(image, target)`` pairs into ``(images, targets)`` lists.

    Images keep their own sizes (the model's transform resizes and batches them) and targets keep
    their own box counts, so a batch may mix images with many, one or no objects. Use it as
    ``DataLoader(dataset, batch_size=..., collate_fn=collate)``; torchvision's detection reference
    ``collate_fn`` (``tuple(zip(*batch))``, a tuple of tuples) works the same with ssd_zoo's models and recipes.
    """
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets


def to_device(targets: Sequence[dict], device: torch.device | str) -> list[dict]:
    """Move every tensor of each target dict to ``device``; other entries are kept as they are."""
    return [
        {k: v.to(device) if isinstance(v, Tensor) else v for k, v in target.items()}
        for target in targets
    ]
