"""Detection where users point it, as functions for notebooks and scripts: images, files, large images by tiles.

    >>> model = ssd_zoo.build("ssd300_vgg16", weights="VOC0712").eval()
    >>> dets = predict.images(model, [image1, image2])              # one torchvision-style dict per image
    >>> det = predict.tiles(model, big_image, size=300, overlap=0.25)  # sliced inference, merged with NMS
    >>> for path, image, det in predict.files(model, predict.find_images(["photos/"])): ...

``model`` is anything model-like: a callable taking ``list[Tensor [3, H, W] float in 0..1]`` and returning one
dict per image with ``boxes`` ``[D, 4]`` xyxy in that image's pixels, ``scores`` ``[D]`` and ``labels`` int64
``[D]`` (an ssd_zoo :class:`~ssd_zoo.SSD` in eval mode, torchvision's detectors, a deployed-model runner).
Every result here has that form, on the CPU; videos and tracking are in :mod:`ssd_zoo.detect.video`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from ssd_zoo.files import read_image

Detector = Callable[[list[Tensor]], list[dict[str, Tensor]]]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def images(model: Detector, inputs: Iterable[Tensor], batch_size: int = 8,
           device: torch.device | str = "cpu") -> list[dict[str, Tensor]]:
    """``model`` on ``inputs`` (float ``[3, H, W]`` in [0, 1], any sizes), ``batch_size`` at a time, under
    ``torch.inference_mode``; one detection dict per image, on the CPU."""
    inputs, out = list(inputs), []
    for start in range(0, len(inputs), batch_size):
        with torch.inference_mode():
            found = model([image.to(device) for image in inputs[start:start + batch_size]])
        out += [{k: v.cpu() for k, v in det.items()} for det in found]
    return out


def tile_windows(height: int, width: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """``(x0, y0, x1, y1)`` windows of ``size x size`` pixels covering an ``H x W`` image, neighbours sharing at
    least ``overlap * size`` pixels; the last window of a row/column ends at the image's edge. An axis shorter
    than ``size`` is one window of its length."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap={overlap}: expected a fraction of the tile in [0, 1)")
    if size < 1:
        raise ValueError(f"tile size={size}: expected a positive number of pixels")

    def starts(length: int) -> list[int]:
        if length <= size:
            return [0]
        count = math.ceil((length - size) / (size * (1 - overlap))) + 1
        return [round(i * (length - size) / (count - 1)) for i in range(count)]

    return [(x, y, min(x + size, width), min(y + size, height)) for y in starts(height) for x in starts(width)]


def _merge(found: list[dict[str, Tensor]], offsets: list[tuple[int, int]], nms_thresh: float,
           limit: int | None) -> dict[str, Tensor]:
    """Shift each part's boxes by its ``(x, y)`` offset, concatenate, per-class NMS, best ``limit`` first."""
    boxes = torch.cat([det["boxes"].float() + torch.tensor([x, y, x, y], dtype=torch.float32)
                       for det, (x, y) in zip(found, offsets)]).reshape(-1, 4)
    scores = torch.cat([det["scores"].float() for det in found])
    labels = torch.cat([det["labels"].long() for det in found])
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:limit]  # sorted by score
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def _drop_cut(det: dict[str, Tensor], window: tuple[int, int, int, int], height: int, width: int,
              margin: float) -> dict[str, Tensor]:
    """Drop the detections that touch (within ``margin`` px) a window edge inside the image: an object cut
    there is seen whole by the neighbouring window (when smaller than the overlap) or by the whole-image pass."""
    x0, y0, x1, y1 = window
    b = det["boxes"]
    cut = torch.zeros(len(b), dtype=torch.bool)
    if x0 > 0:
        cut |= b[:, 0] <= margin
    if y0 > 0:
        cut |= b[:, 1] <= margin
    if x1 < width:
        cut |= b[:, 2] >= (x1 - x0) - margin
    if y1 < height:
        cut |= b[:, 3] >= (y1 - y0) - margin
    return {k: v[~cut] for k, v in det.items()}


def tiles(model: Detector, image: Tensor, size: int, overlap: float = 0.25, *, whole: bool = True,
          nms_thresh: float = 0.45, detections_per_img: int | None = None, batch_size: int = 8,
          drop_cut: bool = True, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Sliced inference for an image much larger than the model's input.

    The image is cut into overlapping ``size x size`` windows (:func:`tile_windows`), each detected at full
    resolution (``batch_size`` windows a forward pass), optionally plus the whole image (which the model
    downscales: it finds the objects too large for a window); boxes are mapped back into the image and merged
    with per-class NMS (``torchvision.ops.batched_nms``) at ``nms_thresh``. With ``drop_cut``, a window's
    detections that touch one of its inner edges are dropped before the merge (the object is cut there).

    Args:
        image: float ``[3, H, W]`` in [0, 1].
        size: window side in image pixels (e.g. the model's input size, to see objects at full resolution).
        overlap: fraction of ``size`` shared by neighbouring windows (make ``overlap * size`` at least the
            largest object a window should find whole).

    Returns:
        ``{"boxes" [D, 4] xyxy image pixels, "scores" [D], "labels" int64 [D]}``, best first, on the CPU.
    """
    height, width = image.shape[-2:]
    windows = tile_windows(height, width, size, overlap)
    crops = [image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in windows]
    margin = 0.5 + size / 200  # a box this close to a window edge is cut by it
    found = [_drop_cut(det, w, height, width, margin) if drop_cut else det
             for det, w in zip(images(model, crops, batch_size, device), windows)]
    offsets = [(x0, y0) for x0, y0, _, _ in windows]
    if whole and len(windows) > 1:
        found += images(model, [image], 1, device)
        offsets.append((0, 0))
    return _merge(found, offsets, nms_thresh, detections_per_img)


def find_images(inputs: Sequence[str | Path], suffixes: set[str] = IMAGE_SUFFIXES) -> list[tuple[Path, Path]]:
    """``(path, name)`` per image: files as given, folders searched recursively for ``suffixes``; ``name`` is
    the path relative to the folder it was found in (``sub/a.jpg``), or the file name for a file given.
    FileNotFoundError names an input that does not exist."""
    found: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += [(p, p.relative_to(item)) for p in sorted(item.rglob("*"))
                      if p.is_file() and p.suffix.lower() in suffixes]
        elif item.is_file():
            found.append((item, Path(item.name)))
        else:
            raise FileNotFoundError(f"expected an image file or a folder, found nothing at {item}")
    return found


def output_names(names: Sequence[Path], suffix: str) -> list[Path]:
    """One output path per input name, never two alike: ``a.jpg`` -> ``a.<suffix>``; where two inputs would meet
    (``a.jpg``, ``a.png``; or the same name from two folders) each keeps its own suffix (``a.jpg.<suffix>``), then
    a number (``a_2.<suffix>``)."""
    plain = [name.with_suffix(suffix) for name in names]
    clash = {p for p in plain if plain.count(p) > 1}
    out: list[Path] = []
    taken: set[Path] = set()
    for name, candidate in zip(names, plain):
        if candidate in clash:
            candidate = name.with_name(name.name + suffix)
        stem, n = candidate.with_suffix(""), 1
        while candidate in taken:
            n += 1
            candidate = stem.with_name(f"{stem.name}_{n}{suffix}")
        taken.add(candidate)
        out.append(candidate)
    return out


class Skipped(NamedTuple):
    """A file that could not be used: its path and why."""

    path: Path
    reason: str


def files(model: Detector, paths: Iterable[Path], batch_size: int = 8, tile: int | None = None,
          overlap: float = 0.25, whole: bool = True, device: torch.device | str = "cpu",
          ) -> Iterator[tuple[Path, Tensor, dict[str, Tensor]] | Skipped]:
    """``(path, image, detections)`` per readable image, in order, ``batch_size`` images a forward pass (or
    each by :func:`tiles` of side ``tile``); a file that is no readable image yields :class:`Skipped` instead,
    and the others go on."""
    paths = list(paths)
    for start in range(0, len(paths), batch_size):
        read: list[tuple[Path, Tensor]] = []
        for path in paths[start:start + batch_size]:
            try:
                read.append((path, read_image(path)))
            except (ValueError, FileNotFoundError) as error:  # no image (or gone since it was listed): the others go on
                yield Skipped(path, str(error))
        if tile is not None:
            found = [tiles(model, image, tile, overlap, whole=whole, batch_size=batch_size, device=device)
                     for _, image in read]
        else:
            found = images(model, [image for _, image in read], batch_size, device) if read else []
        for (path, image), det in zip(read, found):
            yield path, image, det
