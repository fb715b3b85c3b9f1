"""Ground-truth boxes as an SSD sees them: read from a VOC-format root, a COCO json or any dataset
:func:`ssd_zoo.data.records.read_data` reads (a YOLO ``data.yaml``), in pixels of the input.

Only the annotations are read (and an image's header where a VOC XML gives no ``<size>``): no image is
decoded. Boxes are clamped to their image (empty ones dropped, as the datasets do), then mapped the way
:class:`ssd_zoo.SSDTransform` maps them: each image stretched to ``input_size x input_size`` (after padding
it to a square at the bottom and right, with ``pad_to_square``, as the recipes' ``PadToSquare``).
"""
from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ssd_zoo.data.coco import CocoDataset
from ssd_zoo.data.common import clean_boxes
from ssd_zoo.data.records import detect_format, read_data
from ssd_zoo.data.voc import VOCDataset, parse_voc_xml


@dataclass(frozen=True)
class GroundTruth:
    """``boxes`` float32 ``[N, 4]`` xyxy pixels of the ``input_size`` square input; ``labels`` int64 ``[N]``
    in ``1..K`` naming ``class_names[label - 1]``; ``images``: how many images they came from; ``source``: where."""

    boxes: Tensor
    labels: Tensor
    class_names: tuple[str, ...]
    input_size: int
    images: int
    source: str


def to_input(boxes: Tensor, image_sizes: Tensor, input_size: int, pad_to_square: bool = False) -> Tensor:
    """``boxes`` ``[N, 4]`` xyxy pixels of their images, ``image_sizes`` ``[N, 2]`` ``(height, width)`` of each
    box's image -> ``[N, 4]`` xyxy pixels of the ``input_size`` square the model's transform stretches it to."""
    height, width = image_sizes[:, 0].float(), image_sizes[:, 1].float()
    if pad_to_square:
        height = width = torch.maximum(height, width)
    scale = torch.stack([input_size / width, input_size / height] * 2, dim=1)
    return boxes.float() * scale


def _voc_size(xml: Path, dataset: VOCDataset, image_id: str, filename: str | None) -> tuple[int, int]:
    """``(height, width)`` from the XML's ``<size>``, else from the image file's header."""
    node = ET.parse(xml).getroot().find("size")
    if node is not None and node.findtext("width") and node.findtext("height"):
        return int(float(node.findtext("height"))), int(float(node.findtext("width")))
    with Image.open(dataset.image_path(xml.parent.parent, image_id, filename)) as image:
        return image.size[1], image.size[0]


def _read_voc(root: Path, splits: str, keep_difficult: bool, class_names: Sequence[str] | None) -> tuple[list, tuple]:
    dataset = VOCDataset(root, splits, keep_difficult=True, class_names=class_names)
    per_image, skipped = [], []
    for year_dir, image_id in dataset.items:
        xml = year_dir / "Annotations" / f"{image_id}.xml"
        try:
            if not xml.is_file():
                raise FileNotFoundError(f"annotation file not found: {xml} (image {image_id!r})")
            parsed = parse_voc_xml(xml, dataset.class_names)
            height, width = _voc_size(xml, dataset, image_id, parsed["filename"])
        except (ValueError, FileNotFoundError, OSError) as error:  # one bad file: reported, skipped
            skipped.append(str(error))
            continue
        keep = torch.ones_like(parsed["difficult"]) if keep_difficult else ~parsed["difficult"]
        target = {"boxes": parsed["boxes"][keep], "labels": parsed["labels"][keep]}
        per_image.append((clean_boxes(target, height, width, where=str(xml)), height, width))
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} of {len(dataset.items)} images with bad annotations; "
                      f"first: {skipped[0]}", stacklevel=3)
    return per_image, dataset.class_names


def _read_coco(ann_file: Path) -> tuple[list, tuple]:
    dataset = CocoDataset(ann_file.parent, ann_file)  # validates the json; images are never opened here
    per_image = []
    for index, info in enumerate(dataset.images):
        if not all(isinstance(info.get(key), (int, float)) for key in ("width", "height")):
            raise ValueError(f"{ann_file}: images[{index}] (id {info['id']}): expected numeric 'width' and "
                             f"'height' keys (the COCO format has them), found {info!r:.80}")
        height, width = int(info["height"]), int(info["width"])
        where = f"{ann_file}, image {info['id']}"
        per_image.append((clean_boxes(dataset.target_of(index), height, width, where=where), height, width))
    return per_image, dataset.class_names


ROLES = ("train", "val", "test")  # split names every format has (ssd_zoo.data.records)


def _read_role(source: Path, role: str, keep_difficult: bool) -> tuple[list, tuple]:
    """The split ``role`` of any dataset :func:`read_data` reads, as ``[(target, height, width)]`` and names."""
    data = read_data(source)
    if role not in data.splits:
        raise ValueError(f"{source}: expected a {role!r} split, found the splits {sorted(data.splits)}")
    per_image = []
    for record in data.splits[role]:
        keep = torch.ones_like(record.difficult) if keep_difficult else ~record.difficult
        per_image.append(({"boxes": record.boxes[keep], "labels": record.labels[keep]}, record.height, record.width))
    return per_image, data.class_names


def load_boxes(
    source: str | Path,
    input_size: int,
    *,
    splits: str = "2007-trainval",
    keep_difficult: bool = False,
    pad_to_square: bool = False,
    class_names: Sequence[str] | None = None,
) -> GroundTruth:
    """The ground truth of ``source`` in pixels of the ``input_size`` input (see the module docstring).

    ``source``: a VOCdevkit folder (``splits``, ``keep_difficult`` and ``class_names`` as in
    :class:`ssd_zoo.data.VOCDataset`; difficult boxes are left out by default, as training leaves them out)
    or a COCO ``.json`` annotation file (crowd boxes left out; its images need ``width`` and ``height``); or, with
    ``splits`` one of :data:`ROLES` or a YOLO ``data.yaml`` (or its folder; ``splits`` then defaults to
    ``train``), that split of any dataset :func:`ssd_zoo.data.records.read_data` reads.
    Raises FileNotFoundError for a missing source, ValueError when it holds no box.
    """
    source = Path(source)
    if splits in ROLES or (source.exists() and detect_format(source) == "yolo"):
        per_image, names = _read_role(source, splits if splits in ROLES else "train", keep_difficult)
    elif source.is_file() and source.suffix.lower() == ".json":
        per_image, names = _read_coco(source)
    elif source.is_dir():
        per_image, names = _read_voc(source, splits, keep_difficult, class_names)
    else:
        raise FileNotFoundError(f"expected a VOCdevkit folder or a COCO .json file, found "
                                f"{'a ' + source.suffix + ' file' if source.is_file() else 'nothing'} at {source}")
    boxes = [target["boxes"] for target, _, _ in per_image]
    sizes = [torch.tensor([[h, w]]).expand(len(target["boxes"]), 2) for target, h, w in per_image]
    count = sum(len(b) for b in boxes)
    if count == 0:
        what = f"splits {splits!r}" if source.is_dir() else "its annotations"
        raise ValueError(f"{source}: expected ground-truth boxes, found none in {len(per_image)} images ({what})")
    mapped = to_input(torch.cat(boxes), torch.cat(sizes), input_size, pad_to_square)
    labels = torch.cat([target["labels"] for target, _, _ in per_image])
    return GroundTruth(mapped, labels, tuple(names), input_size, len(per_image), str(source))
