"""Pascal VOC (and VOC-format custom) detection datasets.

A VOCdevkit folder looks like::

    root/
      VOC2007/
        JPEGImages/<id>.jpg
        Annotations/<id>.xml
        ImageSets/Main/<set>.txt      one image id per line (trainval.txt, test.txt, ...)
      VOC2012/ ...

XML coordinates are 1-based and inclusive (the devkit's convention); ``VOCDataset`` subtracts 1 so
that boxes are 0-based pixels, as py-faster-rcnn, Detectron and torchvision's SSD did.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssd_zoo.data.common import Transforms, dataset_item
from ssd_zoo.files import read_image

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # label = index + 1; 0 is background

CLASSES_FILE = "classes.txt"  # optional, in the VOCdevkit folder: a custom dataset's class names

_LAYOUT = """  {root}/
    VOC{year}/
      JPEGImages/<id>.jpg
      Annotations/<id>.xml
      ImageSets/Main/{image_set}.txt"""


def parse_splits(splits: str) -> list[tuple[str, str]]:
    """``"2007-trainval+2012-trainval"`` -> ``[("2007", "trainval"), ("2012", "trainval")]``."""
    parsed = []
    for part in splits.split("+"):
        year, sep, image_set = part.strip().partition("-")
        if not sep or not year or not image_set:
            raise ValueError(
                f"splits: expected 'YEAR-SET' joined by '+', e.g. '2007-trainval+2012-trainval'; "
                f"got {part!r} in {splits!r}"
            )
        parsed.append((year, image_set))
    return parsed


def _number(obj: ET.Element, tag: str, where: str) -> float:
    text = obj.findtext(tag)
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number in <{tag}>, found {text!r}") from None
    if not math.isfinite(value):  # "nan", "inf" and "1e999" are floats to Python, no coordinate to VOC
        raise ValueError(f"{where}: expected a finite number in <{tag}>, found {text!r}")
    return value


def parse_voc_xml(path: str | Path, class_names: Sequence[str] = VOC_CLASSES) -> dict:
    """Read one VOC annotation file.

    Returns a dict with ``boxes`` float32 ``[N, 4]`` xyxy 0-based pixels (XML minus 1),
    ``labels`` int64 ``[N]`` (``class_names.index(name) + 1``), ``difficult`` bool ``[N]`` and
    ``filename`` (str or None, the XML's ``<filename>``). Raises ``ValueError`` naming ``path`` and
    the object on malformed XML, a missing or non-numeric coordinate, or an unknown class name.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:  # also an empty file, and bytes not in the declared encoding
        raise ValueError(f"{path}: malformed XML ({err})") from err
    except (LookupError, UnicodeError) as err:  # an encoding Python does not know, or cannot decode
        raise ValueError(f"{path}: unreadable XML encoding ({err})") from err
    label_of = {name: i + 1 for i, name in enumerate(class_names)}
    boxes, labels, difficult = [], [], []
    for i, obj in enumerate(root.iter("object")):
        where = f"{path}, object {i}"
        name = (obj.findtext("name") or "").strip()
        if name not in label_of:
            raise ValueError(
                f"{where}: class {name!r} is not one of class_names {tuple(class_names)}; "
                f"for a custom VOC-format dataset pass class_names=... or list them in classes.txt"
            )
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{where}: expected a <bndbox>, found none")
        boxes.append([_number(bndbox, tag, where) - 1 for tag in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(label_of[name])
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
        "filename": root.findtext("filename"),
    }


def read_class_names(root: str | Path) -> tuple[str, ...]:
    """The names listed in ``root/classes.txt`` (one per line, label order), else ``VOC_CLASSES``.

    A custom VOC-format dataset ships its classes in that file so that ``VOCDataset(root)`` needs
    no ``class_names``; ``generate_shapes_voc`` writes one.
    """
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return VOC_CLASSES
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{path}: expected distinct class names, one per line; found {names}")
    return names


class VOCDataset(Dataset):
    """Pascal VOC detection data from a VOCdevkit folder.

    Args:
        root: the VOCdevkit folder (holding ``VOC2007/``, ``VOC2012/``, ...).
        splits: image sets ``YEAR-SET`` joined by ``+``, e.g. ``"2007-trainval+2012-trainval"``.
        keep_difficult: keep boxes marked difficult (flagged in ``target["difficult"]``); set False
            to drop them from targets, as py-faster-rcnn and ssd.pytorch trained.
        transforms: optional ``(image, target) -> (image, target)``, e.g. ``SSDAugmentation()``.
        class_names: the classes in label order (label = index + 1). By default the names in
            ``root/classes.txt`` (one per line) when that file exists, else ``VOC_CLASSES``.

    An item is ``(image, target)`` in torchvision's types (see ``ssd_zoo.data.common``): ``image`` a
    ``tv_tensors.Image`` float32 ``[3, H, W]`` in ``[0, 1]``; ``target`` with ``boxes`` a
    ``tv_tensors.BoundingBoxes`` float32 ``[N, 4]`` XYXY 0-based pixels, ``labels`` int64 ``[N]`` in ``1..K``,
    ``difficult`` bool ``[N]`` and ``image_id`` the item's index (int64 scalar tensor). Boxes partly outside
    the image are clamped and boxes left empty are dropped with a warning. ``transforms`` may be any
    ``torchvision.transforms.v2`` transform (the boxes move with the image).

    Attributes:
        ids: the VOC file id of each item (``ids[index]``, str), for results files.
    """

    def __init__(
        self,
        root: str | Path,
        splits: str = "2007-trainval",
        *,
        keep_difficult: bool = True,
        transforms: Transforms | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.keep_difficult = keep_difficult
        self.transforms = transforms
        self.class_names: tuple[str, ...] = tuple(class_names or read_class_names(self.root))
        self.items: list[tuple[Path, str]] = []  # (VOC<year> folder, image id)
        for year, image_set in parse_splits(splits):
            year_dir = self.root / f"VOC{year}"
            list_file = year_dir / "ImageSets" / "Main" / f"{image_set}.txt"
            if not list_file.is_file():
                chain = (self.root, year_dir, list_file.parent, list_file)
                missing = next((p for p in chain if not p.exists()), list_file)
                layout = _LAYOUT.format(root=self.root, year=year, image_set=image_set)
                raise FileNotFoundError(
                    f"VOCDataset: expected a VOCdevkit folder laid out as\n{layout}\n"
                    f"but {missing} does not exist"
                )
            ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
            self.items.extend((year_dir, image_id) for image_id in ids)
        self.ids: list[str] = [image_id for _, image_id in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def image_path(self, year_dir: Path, image_id: str, filename: str | None) -> Path:
        """``JPEGImages/<id>.jpg``, else the XML's ``<filename>`` in ``JPEGImages`` (e.g. a PNG)."""
        default = year_dir / "JPEGImages" / f"{image_id}.jpg"
        if default.is_file() or not filename:
            return default
        named = year_dir / "JPEGImages" / Path(filename).name
        if not named.is_file():
            raise FileNotFoundError(f"image file not found: {default} (nor {named.name})")
        return named

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        year_dir, image_id = self.items[index]
        xml_path = year_dir / "Annotations" / f"{image_id}.xml"
        if not xml_path.is_file():
            raise FileNotFoundError(f"annotation file not found: {xml_path} (image {image_id!r})")
        parsed = parse_voc_xml(xml_path, self.class_names)
        image = read_image(self.image_path(year_dir, image_id, parsed.pop("filename")))
        target = parsed
        if not self.keep_difficult:
            keep = ~target["difficult"]
            target.update(
                boxes=target["boxes"][keep],
                labels=target["labels"][keep],
                difficult=target["difficult"][keep],
            )
        return dataset_item(image, target, index, str(xml_path), self.transforms)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, images={len(self)}, "
            f"classes={len(self.class_names)}, keep_difficult={self.keep_difficult})"
        )
