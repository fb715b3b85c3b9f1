"""Datasets, augmentation and batching for detection.

Every dataset yields ``(image, target)``: ``image`` float32 ``[3, H, W]`` in ``[0, 1]``; ``target``
``{"boxes": float32 [N, 4] xyxy pixels, "labels": int64 [N] in 1..K, "difficult": bool [N],
"image_id": str}`` (0 is background). See ``ssd_zoo.data.common``.
"""

from ssd_zoo.data.augment import IMAGENET_MEAN, SSDAugmentation, collate, to_device
from ssd_zoo.data.coco import CocoDataset
from ssd_zoo.data.common import read_image
from ssd_zoo.data.shapes import SHAPES_CLASSES, generate_shapes_voc, render_shapes_image
from ssd_zoo.data.voc import VOC_CLASSES, VOCDataset, parse_voc_xml

__all__ = [
    "IMAGENET_MEAN", "SHAPES_CLASSES", "VOC_CLASSES", "CocoDataset", "SSDAugmentation",
    "VOCDataset", "collate", "generate_shapes_voc", "parse_voc_xml", "read_image",
    "render_shapes_image", "to_device",
]
