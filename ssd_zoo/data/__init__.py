"""Datasets, augmentation and batching for detection.

Every dataset yields ``(image, target)`` in torchvision's types: ``image`` a ``tv_tensors.Image`` float32
``[3, H, W]`` in ``[0, 1]``; ``target`` ``{"boxes": tv_tensors.BoundingBoxes float32 [N, 4] XYXY pixels,
"labels": int64 [N] in 1..K, "difficult": bool [N], "image_id": int64 scalar (the index)}`` (0 is background),
whether read from a VOC folder (``VOCDataset``), a COCO JSON (``CocoDataset``) or a YOLO ``data.yaml``
(``YoloDataset``);
``dataset.ids[index]`` is the image's own id (str). See ``ssd_zoo.data.common``. ``open_dataset(path, split)``
opens any of the three, told apart by what is there; ``convert`` writes one as another; ``check_dataset``
reports what a dataset holds and what is wrong with it (docs/data_formats.md).
"""

from typing import Any

from ssd_zoo.data.augment import IMAGENET_MEAN, SSDAugmentation, collate, to_device
from ssd_zoo.data.check import check_dataset
from ssd_zoo.data.coco import CocoDataset
from ssd_zoo.data.common import per_box_entries
from ssd_zoo.data.formats import convert, list_splits, open_dataset
from ssd_zoo.data.transforms import PadToSquare
from ssd_zoo.data.voc import VOC_CLASSES, VOCDataset, parse_voc_xml
from ssd_zoo.data.yolo import YoloDataset

_SHAPES_NAMES = ("SHAPES_CLASSES", "generate_shapes_voc", "render_shapes_image")

__all__ = [
    "IMAGENET_MEAN", "VOC_CLASSES", "CocoDataset", "PadToSquare", "SSDAugmentation", "VOCDataset", "YoloDataset",
    "check_dataset", "collate", "convert", "list_splits", "open_dataset", "parse_voc_xml", "per_box_entries",
    "to_device", *_SHAPES_NAMES,
]


def __getattr__(name: str) -> Any:
    # ssd_zoo.data.shapes is imported on first use, not here: `python -m ssd_zoo.data.shapes`
    # runs it as __main__, and runpy warns when the package has already imported it.
    if name in _SHAPES_NAMES:
        from ssd_zoo.data import shapes

        return getattr(shapes, name)
    raise AttributeError(f"module 'ssd_zoo.data' has no attribute {name!r}")
