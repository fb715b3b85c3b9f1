"""YOLO-layout detection datasets (ultralytics' ``data.yaml``): what annotation tools and dataset sites export.

A dataset is described by a ``data.yaml``::

    path: .                  # optional root; relative to the yaml's folder (else to the working folder, as
                             # ultralytics takes it); default: the yaml's folder
    train: images/train      # a folder of images, a .txt list of image paths, or a list of those
    val: images/val
    test: images/test        # optional
    names: [cat, dog]        # or {0: cat, 1: dog}; ``nc``, if given, must equal the number of names

Each image ``.../images/.../a.jpg`` has its labels in ``.../labels/.../a.txt`` (the last ``images`` folder of
the path replaced by ``labels``, as ultralytics does), or beside it (``a.jpg`` + ``a.txt``) when its path has no
``images`` folder. One line per box: ``class cx cy w h``, ``class`` the 0-based index into ``names``, the box's
centre and size divided by the image's width and height (``0..1``). An image without a label file, or with an
empty one, is a background image (no box).

Relative entries of a ``.txt`` list are taken relative to the list's folder. Roboflow's exports say
``train: ../train/images`` with the yaml beside ``train/``; as in ultralytics, a ``../`` entry that does not
exist is tried without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ssd_zoo.data.common import Problem, Transforms, dataset_item
from ssd_zoo.files import read_image

DATA_YAML = "data.yaml"
SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_SUFFIXES: frozenset[str] = frozenset({".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"})
# How far past 0..1 a box's edge may lie (a fraction of the image side): exporters round, and a box a hair
# outside is clamped to the image as the other datasets clamp theirs. Further out, the label is wrong.
COORD_TOLERANCE = 0.01


@dataclass(frozen=True)
class YoloLayout:
    """A parsed ``data.yaml``: ``class_names`` in label order (label = index + 1); ``splits`` maps ``train``,
    ``val``, ``test`` (those given) to their sources (folders, ``.txt`` lists or image files); ``root``: the
    folder relative paths start from."""

    yaml_file: Path
    root: Path
    class_names: tuple[str, ...]
    splits: dict[str, tuple[Path, ...]]


def find_data_yaml(path: str | Path) -> Path:
    """``path`` itself when it is a yaml file, else ``path/data.yaml``; FileNotFoundError when there is none."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return path
    if (path / DATA_YAML).is_file():
        return path / DATA_YAML
    raise FileNotFoundError(f"YOLO dataset: expected a data.yaml file or a folder holding one, found "
                            f"{'a ' + (path.suffix or 'suffix-less') + ' file' if path.is_file() else 'no data.yaml'} at {path}")


def _class_names(names: object, nc: object, where: Path) -> tuple[str, ...]:
    if isinstance(names, dict):
        names = {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in names.items()}  # '0': cat
        if set(names) != set(range(len(names))):  # YAML reads "0: cat" as int 0; a bool or str key is no id
            raise ValueError(f"{where}: names: expected the ids 0..{len(names) - 1} as keys, found "
                             f"{sorted(map(repr, names))}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names or not all(isinstance(n, (str, int)) for n in names):
        raise ValueError(f"{where}: names: expected a list of class names or a {{id: name}} mapping, found {names!r:.80}")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: names: expected distinct class names, found {names}")
    if nc is not None and nc != len(names):
        raise ValueError(f"{where}: nc: expected the number of names ({len(names)}), found {nc!r}")
    return tuple(names)


def _resolve(entry: str, root: Path, where: str) -> Path:
    path = Path(entry) if Path(entry).is_absolute() else root / entry
    if not path.exists() and entry.startswith("../") and (root / entry[3:]).exists():
        path = root / entry[3:]  # Roboflow's "../train/images" written beside the yaml (ultralytics does this too)
    if not path.exists():
        raise FileNotFoundError(f"{where}: expected a folder of images, a .txt list or an image, found nothing at {path}")
    return path


def read_data_yaml(path: str | Path) -> YoloLayout:
    """Parse the ``data.yaml`` at (or in) ``path``; ValueError or FileNotFoundError naming the file and key."""
    yaml_file = find_data_yaml(path)
    try:
        data = yaml.safe_load(yaml_file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{yaml_file}: malformed YAML ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{yaml_file}: expected a mapping with train, val and names, found {type(data).__name__}")
    if "names" not in data or "train" not in data:
        raise ValueError(f"{yaml_file}: expected the keys 'train' and 'names', found {sorted(map(str, data))}")
    names = _class_names(data["names"], data.get("nc"), yaml_file)
    given = Path(str(data.get("path") or "."))
    root = given if given.is_absolute() else yaml_file.parent / given
    if not root.is_dir() and given.is_dir():  # ultralytics takes a relative path from where it runs
        root = given
    splits = {}
    for split in SPLITS:
        value = data.get(split)
        if value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        if not entries or not all(isinstance(e, str) and e for e in entries):
            raise ValueError(f"{yaml_file}: {split}: expected a path or a list of paths, found {value!r:.80}")
        splits[split] = tuple(_resolve(e, root, f"{yaml_file}: {split}") for e in entries)
    return YoloLayout(yaml_file, root, names, splits)


def image_files(sources: tuple[Path, ...]) -> list[Path]:
    """The images of a split's sources: every image under a folder (sorted), the entries of a ``.txt`` list
    (relative ones from the list's folder), an image file itself. Duplicates are kept once."""
    found: list[Path] = []
    for source in sources:
        if source.is_dir():
            found.extend(sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        elif source.suffix.lower() == ".txt":
            lines = [line.strip() for line in source.read_text().splitlines() if line.strip()]
            found.extend(Path(line) if Path(line).is_absolute() else source.parent / line for line in lines)
        else:
            found.append(source)
    return list(dict.fromkeys(found))


def label_file(image: Path) -> Path:
    """Where ultralytics looks for ``image``'s labels: the last ``/images/`` of its path made ``/labels/``, the
    suffix ``.txt`` (beside the image when the path has no ``images`` folder)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _parse_line(fields: list[str], num_classes: int) -> tuple[str, str] | tuple[int, list[float]]:
    """``(label 1..K, [cx, cy, w, h])`` of one line's fields, or ``(problem kind, message)``."""
    if len(fields) != 5:
        hint = " (a segmentation polygon? only boxes are read)" if len(fields) > 5 else ""
        return "bad-label", f"expected 5 fields 'class cx cy w h', found {len(fields)}{hint}"
    try:
        cls = float(fields[0])
        values = [float(f) for f in fields[1:]]
    except ValueError:
        return "bad-label", f"expected numbers, found {' '.join(fields)!r}"
    if not cls.is_integer():
        return "bad-label", f"expected an integer class id, found {fields[0]!r}"
    if not 0 <= cls < num_classes:
        return "unknown-class", f"class id {fields[0]} is outside names (0..{num_classes - 1})"
    if not all(map(math.isfinite, values)):
        return "bad-label", f"expected finite numbers, found {' '.join(fields[1:])!r}"
    cx, cy, w, h = values
    if w < 0 or h < 0:
        return "bad-label", f"expected a width and height >= 0, found w={fields[3]} h={fields[4]}"
    edges = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    if not all(-COORD_TOLERANCE <= e <= 1 + COORD_TOLERANCE for e in edges):
        return "bad-label", (f"expected a box inside the image (coordinates normalised to 0..1), found edges "
                             f"x {edges[0]:.4g}..{edges[2]:.4g}, y {edges[1]:.4g}..{edges[3]:.4g}")
    return int(cls) + 1, values


def parse_label_file(path: Path, num_classes: int) -> tuple[Tensor, Tensor, list[int], list[Problem]]:
    """Read one YOLO label file: ``(labels int64 [N] in 1..K, boxes float32 [N, 4] cx cy w h in 0..1, the 1-based
    line of each box, problems)``. A missing file is a background image (no box). Lines with a problem
    (:class:`Problem` kinds ``bad-label``, ``unknown-class``) are left out and reported; blank lines are skipped."""
    labels: list[int] = []
    boxes: list[list[float]] = []
    lines: list[int] = []
    problems: list[Problem] = []
    if not path.is_file():
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4), lines, problems
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some Windows tools write, is no field
    except (OSError, UnicodeDecodeError) as err:
        problem = Problem("bad-label", str(path), None, f"cannot read the label file ({err})")
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4), lines, [problem]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        first, second = _parse_line(line.split(), num_classes)
        if isinstance(first, str):
            problems.append(Problem(first, str(path), number, second))  # type: ignore[arg-type]
            continue
        labels.append(first)
        boxes.append(second)  # type: ignore[arg-type]
        lines.append(number)
    return (torch.tensor(labels, dtype=torch.int64), torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            lines, problems)


def to_pixels(cxcywh: Tensor, width: int, height: int) -> Tensor:
    """``[N, 4]`` normalised ``cx cy w h`` -> float32 ``[N, 4]`` xyxy pixels of a ``width x height`` image."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    centre, size = cxcywh[:, :2], cxcywh[:, 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=1) * scale


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image file's header (nothing is decoded); ValueError naming an unreadable file."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read the image ({err})") from err


class YoloDataset(Dataset):
    """Detection data in the YOLO layout (see the module docstring).

    Args:
        data: a ``data.yaml`` file or the folder holding it.
        split: ``train``, ``val`` or ``test``: which of the yaml's keys to read.
        transforms: optional ``(image, target) -> (image, target)``, e.g. ``SSDAugmentation()`` or any
            ``torchvision.transforms.v2`` transform (the boxes move with the image).

    Every label file is read here, so that a bad line fails now, not an hour into training: ValueError
    ``<file>:<line>: ...`` for a line without 5 fields, with non-numbers, a class id outside ``names`` or a box
    outside the image by more than ``COORD_TOLERANCE``. An item is ``(image, target)`` in torchvision's types (see
    ``ssd_zoo.data.common``), as :class:`VOCDataset` gives: ``image`` a ``tv_tensors.Image`` float32
    ``[3, H, W]`` in ``[0, 1]``; ``target`` with ``boxes`` a ``tv_tensors.BoundingBoxes`` float32 ``[N, 4]`` XYXY
    pixels, ``labels`` int64 ``[N]`` in ``1..K`` (the file's class + 1), ``difficult`` bool ``[N]`` (all False)
    and ``image_id`` the item's index (int64 scalar tensor). Boxes a hair outside are clamped; boxes of no
    area are dropped with a warning naming the label file, as the other datasets drop theirs.

    Attributes:
        class_names: the yaml's names in label order (label = index + 1).
        image_paths, label_paths: each item's image and label file (which need not exist).
        ids: each item's image path relative to the yaml's root (str, POSIX), for results files.
    """

    def __init__(self, data: str | Path, split: str = "train", *, transforms: Transforms | None = None) -> None:
        self.layout = read_data_yaml(data)
        if split not in self.layout.splits:
            raise ValueError(f"{self.layout.yaml_file}: expected a {split!r} key (the split asked for), found the "
                             f"splits {sorted(self.layout.splits)}")
        self.split = split
        self.transforms = transforms
        self.class_names: tuple[str, ...] = self.layout.class_names
        self.image_paths: list[Path] = image_files(self.layout.splits[split])
        self.label_paths: list[Path] = [label_file(p) for p in self.image_paths]
        self._labels: list[tuple[Tensor, Tensor]] = []
        for path in self.label_paths:
            labels, boxes, _, problems = parse_label_file(path, len(self.class_names))
            if problems:
                raise ValueError(str(problems[0]) + (f" (and {len(problems) - 1} more problems in the file)"
                                                     if len(problems) > 1 else ""))
            self._labels.append((labels, boxes))
        root = self.layout.root.resolve()
        self.ids: list[str] = [p.resolve().relative_to(root).as_posix() if p.resolve().is_relative_to(root)
                               else p.as_posix() for p in self.image_paths]

    def __len__(self) -> int:
        return len(self.image_paths)

    def target_of(self, index: int, width: int, height: int) -> dict:
        """The raw target of item ``index`` in pixels of its ``width x height`` image (before clamping)."""
        labels, boxes = self._labels[index]
        return {"boxes": to_pixels(boxes, width, height), "labels": labels.clone(),
                "difficult": torch.zeros(len(labels), dtype=torch.bool)}

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        image = read_image(self.image_paths[index])
        height, width = image.shape[-2:]
        target = self.target_of(index, int(width), int(height))
        return dataset_item(image, target, index, str(self.label_paths[index]), self.transforms)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(data={str(self.layout.yaml_file)!r}, split={self.split!r}, "
                f"images={len(self)}, classes={len(self.class_names)})")
