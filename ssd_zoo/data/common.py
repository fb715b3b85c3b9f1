"""Helpers shared by the datasets: reading images and cleaning boxes.

Every dataset in ``ssd_zoo.data`` returns ``(image, target)`` in torchvision's detection format:

- ``image``: float32 ``[3, H, W]`` in ``[0, 1]``, RGB.
- ``target["boxes"]``: float32 ``[N, 4]``, ``(x1, y1, x2, y2)`` in absolute pixels
  (shape ``[0, 4]`` when the image has no object).
- ``target["labels"]``: int64 ``[N]``, classes ``1..K`` (0 is background and never appears).
- ``target["difficult"]``: bool ``[N]``, boxes the VOC metric neither rewards nor penalises.
- ``target["image_id"]``: str, the dataset's own id of the image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from torch import Tensor
from torchvision.transforms.v2.functional import pil_to_tensor

# A dataset transform: (image, target) -> (image, target), e.g. SSDAugmentation().
Transforms = Callable[[Tensor, dict], tuple[Tensor, dict]]

# Per-box entries of a target: whatever filters boxes must filter these alongside.
PER_BOX_KEYS: tuple[str, ...] = ("labels", "difficult", "area", "iscrowd")


def read_image(path: str | Path) -> Tensor:
    """Read an image file as float32 ``[3, H, W]`` RGB in ``[0, 1]``.

    Raises ``FileNotFoundError`` or ``ValueError`` naming ``path`` when it is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            pixels = pil_to_tensor(image.convert("RGB"))
    except OSError as err:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(f"{path}: cannot decode image ({err})") from err
    return pixels.float().div_(255.0)


def clean_boxes(target: dict, height: int, width: int, where: str) -> dict:
    """Clamp ``target["boxes"]`` to the ``width x height`` image and drop boxes left degenerate.

    A box partly outside the image is clamped to ``[0, width] x [0, height]``; a box whose width or
    height is not positive afterwards (or that holds a NaN) is dropped together with its per-box
    entries (``PER_BOX_KEYS``), and a warning naming ``where`` counts the drops. Degenerate boxes
    would otherwise turn into NaN regression targets in the loss.

    Returns a new dict; ``target`` is not modified.
    """
    boxes = target["boxes"].clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # False for NaN too
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
