"""Helpers shared by the datasets: their target format and cleaning boxes (images: :func:`ssd_zoo.files.read_image`).

Every dataset in ``ssd_zoo.data`` returns ``(image, target)`` in torchvision's detection format, with
torchvision's types, so that any ``torchvision.transforms.v2`` transform moves the boxes with the image:

- ``image``: ``tv_tensors.Image``, float32 ``[3, H, W]`` in ``[0, 1]``, RGB.
- ``target["boxes"]``: ``tv_tensors.BoundingBoxes(format="XYXY", canvas_size=(H, W))``, float32 ``[N, 4]``,
  ``(x1, y1, x2, y2)`` in absolute pixels (shape ``[0, 4]`` when the image has no object).
- ``target["labels"]``: int64 ``[N]``, classes ``1..K`` (0 is background and never appears).
- ``target["difficult"]``: bool ``[N]``, boxes the VOC metric neither rewards nor penalises.
- ``target["image_id"]``: int64 scalar tensor, the item's index; ``dataset.ids[index]`` is the dataset's own
  id of the image (a str: the VOC file id, the COCO image id), which results files use.

Every target value is a tensor, so ``{k: v.to(device) for k, v in target.items()}`` (torchvision's detection
reference) moves a whole target. A v2 pipeline that drops boxes (``SanitizeBoundingBoxes``) must drop the other
per-box entries with them: pass ``labels_getter=per_box_entries``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors

# A dataset transform: (image, target) -> (image, target), e.g. SSDAugmentation().
Transforms = Callable[[Tensor, dict], tuple[Tensor, dict]]

# Per-box entries of a target: whatever filters boxes must filter these alongside.
PER_BOX_KEYS: tuple[str, ...] = ("labels", "difficult", "area", "iscrowd")


def per_box_entries(inputs: Any) -> tuple[Tensor, ...]:
    """``labels_getter`` for ``v2.SanitizeBoundingBoxes``: every per-box entry (``PER_BOX_KEYS``) of the target.

    ``inputs`` is the sample as the transform sees it: ``(image, target)`` or a dict holding the target's keys.
    torchvision's default getter finds ``labels`` only, which would leave ``difficult`` (and COCO's ``area``,
    ``iscrowd``) misaligned with the boxes it keeps.
    """
    target = inputs[1] if isinstance(inputs, (tuple, list)) and len(inputs) > 1 else inputs
    if not isinstance(target, Mapping):
        raise ValueError(f"per_box_entries: expected (image, target dict) or a dict, found {type(inputs).__name__}")
    return tuple(target[key] for key in PER_BOX_KEYS if isinstance(target.get(key), Tensor))


def as_tv_tensors(image: Tensor, target: dict, index: int) -> tuple[tv_tensors.Image, dict]:
    """A dataset item in torchvision's types: ``image`` as ``tv_tensors.Image`` (no copy), ``target["boxes"]`` as
    ``tv_tensors.BoundingBoxes(format="XYXY", canvas_size=(H, W))`` and ``target["image_id"]`` = ``index``
    (int64 scalar tensor). Returns a new dict; the other entries are kept."""
    height, width = image.shape[-2:]
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(int(height), int(width)))
    return tv_tensors.Image(image), dict(target, boxes=boxes, image_id=torch.tensor(index, dtype=torch.int64))


def dataset_item(image: Tensor, target: dict, index: int, where: str,
                 transforms: Transforms | None) -> tuple[Tensor, dict]:
    """What a dataset returns for item ``index`` from its image (float ``[3, H, W]``) and raw target: boxes
    cleaned (:func:`clean_boxes`, ``where`` names the annotation in messages), torchvision's types
    (:func:`as_tv_tensors`), then the dataset's ``transforms`` (None: none)."""
    target = clean_boxes(target, image.shape[-2], image.shape[-1], where=where)
    image, target = as_tv_tensors(image, target, index)
    if transforms is not None:
        image, target = transforms(image, target)
    return image, target


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset's files, found by a reader that reports instead of raising.

    ``kind``: one of ``PROBLEM_KINDS``; ``file``: the file it is in; ``line``: the 1-based line of a YOLO label
    file, else None; ``message``: what was expected and what was found. ``str()`` is ``file:line: kind: message``.
    """

    kind: str
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.kind}: {self.message}"


# What a data check reports (ssd_zoo.data.check): a label that cannot be read, a class outside the names, a box of
# no area once clamped to its image (the datasets drop these with a warning), an image that cannot be decoded,
# an image whose bytes are those of another.
PROBLEM_KINDS: tuple[str, ...] = ("bad-label", "unknown-class", "degenerate-box", "unreadable-image", "duplicate-image")


def clamp_boxes(boxes: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """``boxes`` float ``[N, 4]`` xyxy pixels clamped to ``[0, width] x [0, height]``, and the bool ``[N]`` mask
    of those with a positive width and height afterwards (False for NaN): the boxes :func:`clean_boxes` keeps."""
    boxes = boxes.clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes, (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def clean_boxes(target: dict, height: int, width: int, where: str) -> dict:
    """Clamp ``target["boxes"]`` to the ``width x height`` image and drop boxes left degenerate.

    A box partly outside the image is clamped to ``[0, width] x [0, height]``; a box whose width or
    height is not positive afterwards (or that holds a NaN) is dropped together with its per-box
    entries (``PER_BOX_KEYS``), and a warning naming ``where`` counts the drops. Degenerate boxes
    would otherwise turn into NaN regression targets in the loss.

    Returns a new dict; ``target`` is not modified.
    """
    boxes, keep = clamp_boxes(target["boxes"], height, width)
    out = dict(target, boxes=boxes)
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(
            f"{where}: dropped {dropped} of {len(keep)} boxes that are empty after clamping "
            f"to the {width}x{height} image",
            stacklevel=3,
        )
        out["boxes"] = boxes[keep]
        for key in PER_BOX_KEYS:
            if key in out:
                out[key] = out[key][keep]
    return out
