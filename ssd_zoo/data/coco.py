"""COCO-format detection datasets: the way most users bring their own data.

The annotation file is the COCO JSON::

    {"images":      [{"id": 7, "file_name": "a.jpg", ...}, ...],
     "annotations": [{"id": 1, "image_id": 7, "category_id": 18, "bbox": [x, y, w, h],
                      "iscrowd": 0, "area": 1234.5}, ...],
     "categories":  [{"id": 18, "name": "dog"}, ...]}

Category ids may have gaps (COCO's run 1..90 for 80 classes); they are mapped to contiguous labels
``1..K`` in increasing id order.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssd_zoo.data.common import Transforms, dataset_item
from ssd_zoo.files import read_image


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: malformed JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top, found {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            found = repr(data.get(key))[:60]
            raise ValueError(f"{path}: expected a list under key {key!r}, found {found}")
    return data


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


# What each entry's fields must be: (test, what the error says is expected).
_ID = (_is_id, "an int or str id")
_FIELDS = {
    "categories": {"id": _ID, "name": (lambda v: isinstance(v, str), "a string")},
    "images": {"id": _ID, "file_name": (lambda v: isinstance(v, str) and v != "", "a non-empty string")},
    "annotations": {"id": _ID, "image_id": _ID, "category_id": _ID,
                    "bbox": (lambda v: isinstance(v, list) and len(v) == 4 and all(map(_is_number, v)),
                             "[x, y, w, h]: 4 finite numbers"),
                    "area": (_is_number, "a finite number"),
                    "iscrowd": (lambda v: v in (0, 1) and not isinstance(v, float), "0 or 1")},
}
_REQUIRED = {"categories": {"id", "name"}, "images": {"id", "file_name"}, "annotations": set()}


def _check_entries(data: dict, path: Path) -> None:
    """Raise ValueError naming the file and the entry (``images[3]['id']``) for an entry that is not an object,
    lacks a required key, holds a value of the wrong type (see ``_FIELDS``), or repeats another's id.

    Annotations' missing keys are left to the caller, whose message names the annotation by its id.
    """
    for key, fields in _FIELDS.items():
        first_with: dict[object, int] = {}
        for i, entry in enumerate(data[key]):
            required = _REQUIRED[key]
            if not isinstance(entry, dict) or not required <= entry.keys():
                expected = f"keys {sorted(required)}" if required else "an object"
                raise ValueError(f"{path}: {key}[{i}]: expected {expected}, found {entry!r:.80}")
            for name, (valid, expected) in fields.items():
                if name in entry and not valid(entry[name]):
                    raise ValueError(f"{path}: {key}[{i}]['{name}']: expected {expected}, found {entry[name]!r:.60}")
            if "id" in entry and first_with.setdefault(entry["id"], i) != i:
                raise ValueError(f"{path}: {key}[{i}] has the id {entry['id']!r} of {key}[{first_with[entry['id']]}]; "
                                 "expected unique ids")


class CocoDataset(Dataset):
    """Detection data described by a COCO-format JSON file.

    Args:
        image_dir: folder holding the images named by each image's ``file_name``.
        ann_file: the COCO JSON annotation file.
        transforms: optional ``(image, target) -> (image, target)``, e.g. ``SSDAugmentation()``.

    An item is ``(image, target)`` in torchvision's types (see ``ssd_zoo.data.common``): ``image`` a
    ``tv_tensors.Image`` float32 ``[3, H, W]`` in ``[0, 1]``; ``target`` with ``boxes`` a
    ``tv_tensors.BoundingBoxes`` float32 ``[N, 4]`` XYXY pixels (converted from COCO's xywh), ``labels``
    int64 ``[N]`` in ``1..K``, ``difficult`` bool ``[N]`` (all False), ``area`` float32 ``[N]`` (the JSON's
    ``area``, else the box area; COCO AP's small/medium/large ranges use it) and ``image_id`` the item's
    index (int64 scalar tensor; ``ids[index]`` is the JSON image id). ``transforms`` may be any
    ``torchvision.transforms.v2`` transform (the boxes move with the image). Crowd annotations
    (``iscrowd: 1``) are left out of targets unless ``include_crowd=True``, which keeps them with an
    ``iscrowd`` bool ``[N]`` entry so that
    ``COCOEvaluator`` can ignore detections on them as the official evaluation does (use it for
    evaluation only: the SSD loss would treat crowd boxes as objects). Images without
    annotations are kept as negatives.

    Attributes:
        class_names: category names in label order (label = index + 1).
        category_ids: the JSON category id of each label ``1..K`` (``category_ids[label - 1]``).
        ids: the JSON image id of each item (``ids[index]``, str), for results files.
    """

    def __init__(
        self,
        image_dir: str | Path,
        ann_file: str | Path,
        *,
        transforms: Transforms | None = None,
        include_crowd: bool = False,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        self.transforms = transforms
        self.include_crowd = include_crowd
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"CocoDataset: image folder not found: {self.image_dir}")
        data = _load_json(self.ann_file)
        _check_entries(data, self.ann_file)
        categories = sorted(data["categories"], key=lambda c: (isinstance(c["id"], str), c["id"]))
        self.category_ids: list[int] = [c["id"] for c in categories]
        self.class_names: tuple[str, ...] = tuple(str(c["name"]) for c in categories)
        self.images: list[dict] = list(data["images"])
        self.ids: list[str] = [str(image["id"]) for image in self.images]
        image_ids = {image["id"] for image in self.images}
        label_of = {cat_id: i + 1 for i, cat_id in enumerate(self.category_ids)}
        self._annotations: dict[object, list[dict]] = defaultdict(list)
        for i, ann in enumerate(data["annotations"]):
            where = f"{self.ann_file}, annotation {ann.get('id', f'#{i}')}"
            missing = {"image_id", "category_id", "bbox"} - ann.keys()
            if missing:
                raise ValueError(f"{where}: missing key(s) {sorted(missing)}")
            if ann["category_id"] not in label_of:
                raise ValueError(
                    f"{where}: category_id {ann['category_id']} is not among the categories "
                    f"{self.category_ids}"
                )
            if ann["image_id"] not in image_ids:
                raise ValueError(f"{where}: image_id {ann['image_id']} is not among the images")
            if len(ann["bbox"]) != 4:
                raise ValueError(f"{where}: expected bbox [x, y, w, h], found {ann['bbox']}")
            if ann.get("iscrowd", 0) and not include_crowd:
                continue  # crowd regions are no training target
            self._annotations[ann["image_id"]].append(dict(ann, label=label_of[ann["category_id"]]))

    def __len__(self) -> int:
        return len(self.images)

    def annotations_of(self, index: int) -> list[dict]:
        """The JSON annotations of image ``index`` that its target holds, in the target's box order (each with a
        ``label`` key added: its ``1..K`` label)."""
        return self._annotations.get(self.images[index]["id"], [])

    def target_of(self, index: int) -> dict:
        """The raw target of image ``index`` (before clamping to the image): see the class doc."""
        anns = self.annotations_of(index)
        xywh = torch.tensor([ann["bbox"] for ann in anns], dtype=torch.float32).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        area = [float(ann.get("area", w * h)) for ann, (w, h) in zip(anns, xywh[:, 2:].tolist())]
        target = {
            "boxes": boxes,
            "labels": torch.tensor([ann["label"] for ann in anns], dtype=torch.int64),
            "difficult": torch.zeros(len(anns), dtype=torch.bool),
            "area": torch.tensor(area, dtype=torch.float32),
            "image_id": torch.tensor(index, dtype=torch.int64),
        }
        if self.include_crowd:
            crowd = [bool(ann.get("iscrowd", 0)) for ann in anns]
            target["iscrowd"] = torch.tensor(crowd, dtype=torch.bool)
        return target

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        info = self.images[index]
        image = read_image(self.image_dir / info["file_name"])
        where = f"{self.ann_file}, image {info['id']} ({info['file_name']})"
        return dataset_item(image, self.target_of(index), index, where, self.transforms)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_dir={str(self.image_dir)!r}, images={len(self)}, "
            f"classes={len(self.class_names)})"
        )
