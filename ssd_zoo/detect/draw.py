"""Pictures of detections that people can read: one colour per class, labels legible on small images, a legend.

    >>> picture = draw_detections(image, detection, ["__background__", "circle", "square"])  # uint8 [3, H', W']

One function serves ``ssd-zoo detect`` (photos, tiles, video frames) and the recipes' pictures. A small image is
drawn on an upscaled copy (nearest neighbour, an integer factor, so its pixels stay sharp) so that labels stay
readable; the text is sized to the picture. Colours come from a fixed palette indexed by the label, so a class
has the same colour in every picture and every frame.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

# 20 colours that differ at a glance (Kelly's / Tableau-like), RGB 0..255; label k gets PALETTE[(k - 1) % 20].
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)
MIN_SIDE = 480  # a picture whose shorter side is smaller is drawn on a copy upscaled by an integer factor


def class_colour(label: int) -> tuple[int, int, int]:
    """The RGB colour of class ``label`` (1-based, 0 is background) in every picture."""
    return PALETTE[(int(label) - 1) % len(PALETTE)]


def _text_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones (relative luminance)."""
    return (0, 0, 0) if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 140 else (255, 255, 255)


def _as_pil(image: Tensor, factor: int) -> Image.Image:
    """float ``[3, H, W]`` in [0, 1] or uint8 -> an RGB PIL image, ``factor`` times larger (nearest)."""
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    picture = Image.fromarray(np.ascontiguousarray(image.cpu().permute(1, 2, 0).numpy()))
    if factor > 1:
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    return picture


def upscale_factor(height: int, width: int, min_side: int = MIN_SIDE) -> int:
    """The integer factor by which an ``H x W`` image is drawn: its shorter side at least ``min_side``."""
    return max(1, math.ceil(min_side / max(1, min(height, width))))


def draw_detections(image: Tensor, detection: dict[str, Tensor], class_names: Sequence[str], *,
                    min_score: float = 0.0, min_side: int = MIN_SIDE, legend: bool = True) -> Tensor:
    """Draw boxes, ``"<name> <score>"`` labels (``"#<id> ..."`` with a ``track_id``) and a legend.

    Args:
        image: float ``[3, H, W]`` RGB in [0, 1], or uint8.
        detection: ``boxes`` ``[D, 4]`` xyxy in the image's pixels, ``scores`` ``[D]``, ``labels`` int ``[D]``
            (indices into ``class_names``), optionally ``track_id`` int ``[D]`` (-1: none).
        class_names: names of labels ``0 .. C-1``, index 0 background.
        min_score: detections scoring less are not drawn.
        min_side: a picture with a shorter side below this is drawn on a copy upscaled by an integer factor.
        legend: a box at the top left naming the classes drawn, each in its colour.

    Returns:
        uint8 ``[3, f * H, f * W]``, ``f = upscale_factor(H, W, min_side)`` (1 for images large enough).
    """
    factor = upscale_factor(*image.shape[-2:], min_side=min_side)
    picture = _as_pil(image, factor)
    keep = detection["scores"] >= min_score
    boxes = (detection["boxes"][keep].float().cpu() * factor).tolist()
    labels, scores = detection["labels"][keep].tolist(), detection["scores"][keep].tolist()
    ids = detection["track_id"][keep].tolist() if "track_id" in detection else [-1] * len(labels)
    size = max(12, round(min(picture.width, picture.height) / 40))  # text height, pixels of the picture
    font = ImageFont.load_default(size=size)
    line = max(2, size // 6)
    draw = ImageDraw.Draw(picture)
    order = sorted(range(len(labels)), key=lambda i: scores[i])  # best last: its label on top
    for i in order:
        colour = class_colour(labels[i])
        draw.rectangle(boxes[i], outline=colour, width=line)
    for i in order:
        colour, (x1, y1, _, _) = class_colour(labels[i]), boxes[i]
        text = ("" if ids[i] < 0 else f"#{ids[i]} ") + f"{class_names[labels[i]]} {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left + 2 * line, bottom - top + 2 * line
        x = min(max(0, x1), max(0, picture.width - w))
        y = y1 - h if y1 - h >= 0 else y1  # above the box, or inside it at the top edge
        draw.rectangle([x, y, x + w, y + h], fill=colour)
        draw.text((x + line - left, y + line - top), text, fill=_text_colour(colour), font=font)
    if legend and labels:
        _legend(draw, sorted(set(labels)), class_names, font, line)
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)


def _legend(draw: ImageDraw.ImageDraw, labels: list[int], class_names: Sequence[str], font: ImageFont.FreeTypeFont,
            pad: int) -> None:
    """The classes drawn, a colour swatch and the name each, in a dark box at the top left."""
    boxes = [draw.textbbox((0, 0), class_names[label], font=font) for label in labels]
    height = max(b[3] - b[1] for b in boxes) + pad
    swatch = height
    width = max(b[2] - b[0] for b in boxes) + swatch + 3 * pad
    draw.rectangle([0, 0, width, len(labels) * (height + pad) + pad], fill=(20, 20, 20))
    for row, (label, box) in enumerate(zip(labels, boxes)):
        y = pad + row * (height + pad)
        draw.rectangle([pad, y, pad + swatch, y + height], fill=class_colour(label))
        draw.text((2 * pad + swatch - box[0], y + (height - (box[3] - box[1])) / 2 - box[1]), class_names[label],
                  fill=(255, 255, 255), font=font)
