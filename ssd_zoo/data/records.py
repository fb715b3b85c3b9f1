"""Any of the three dataset formats read into one in-memory form: per split, a list of image records.

``read_data(path)`` tells the format apart by what is there (:func:`detect_format`) and reads every split with
the format's own reader (``VOCDataset``'s, ``CocoDataset``'s, ``YoloDataset``'s parsing), so a record holds the
boxes and labels the dataset's ``target`` would, before any transform: XYXY pixels clamped to the image, boxes
of no area dropped. Conversion (:mod:`ssd_zoo.data.writers`) and the data check (:mod:`ssd_zoo.data.check`)
start from here.

Splits are named by role, ``train``, ``val`` and ``test``, whatever the format calls them:

- YOLO: the ``data.yaml`` keys.
- VOC (each ``VOC<year>/ImageSets/Main`` list, years joined): ``train`` is ``trainval.txt`` (else ``train.txt``),
  ``val`` is ``val.txt`` unless a ``trainval.txt`` already holds it, ``test`` is ``test.txt``.
- COCO: one JSON file is one split, named by the first of ``train``, ``val`` (or ``valid``), ``test`` found in
  its file name, else its folder's name, else ``train``.

With ``report`` given, a reader does not raise on a bad label, a class outside the names, a box of no area or
an image it cannot open: it hands a :class:`~ssd_zoo.data.common.Problem` to ``report``, leaves the box (or the
image) out and goes on. Without it, these raise as the datasets raise (boxes of no area warn and are dropped).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ssd_zoo.data.coco import CocoDataset
from ssd_zoo.data.common import Problem, clamp_boxes, clean_boxes
from ssd_zoo.data.voc import VOCDataset, parse_voc_xml, read_class_names
from ssd_zoo.data.yolo import DATA_YAML, image_files, image_size, label_file, parse_label_file, read_data_yaml, to_pixels

FORMATS: tuple[str, ...] = ("voc", "coco", "yolo")
Report = Callable[[Problem], None]


@dataclass
class ImageRecord:
    """One image and its boxes. ``path``: the image file; ``width``, ``height``: its size in pixels (from the
    file's header); ``boxes`` float32 ``[N, 4]`` XYXY pixels; ``labels`` int64 ``[N]`` in ``1..K``; ``difficult``
    bool ``[N]`` (VOC's flag; False elsewhere); ``annotation``: the file holding its boxes (for messages)."""

    path: Path
    width: int
    height: int
    boxes: Tensor
    labels: Tensor
    difficult: Tensor
    annotation: str


@dataclass
class DetectionData:
    """A dataset in memory: ``format`` (``voc``, ``coco``, ``yolo``) and ``source`` it was read from,
    ``class_names`` in label order (label = index + 1), ``splits``: role -> records."""

    format: str
    source: Path
    class_names: tuple[str, ...]
    splits: dict[str, list[ImageRecord]]


def detect_format(path: str | Path) -> str:
    """``yolo`` for a ``data.yaml`` (or a folder holding one), ``coco`` for a ``.json`` file (or a folder of them),
    ``voc`` for a VOCdevkit folder (``VOC<year>/`` inside) or a ``VOC<year>`` folder (``Annotations/`` inside).
    FileNotFoundError saying what was looked for when it is none of these."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in (".yaml", ".yml"):
            return "yolo"
        if path.suffix.lower() == ".json":
            return "coco"
    elif path.is_dir():
        if (path / DATA_YAML).is_file():
            return "yolo"
        if (path / "Annotations").is_dir() or _voc_years(path):
            return "voc"
        if coco_files(path):
            return "coco"
    if (path / "VOCdevkit").is_dir():
        raise FileNotFoundError(f"expected a dataset at {path}; for VOC, pass the VOCdevkit folder inside it: "
                                f"{path / 'VOCdevkit'}")
    found = "nothing" if not path.exists() else f"a {path.suffix or 'suffix-less'} file" if path.is_file() else \
        "a folder without data.yaml, VOC<year>/, Annotations/ or .json files"
    raise FileNotFoundError(f"expected a dataset: a YOLO data.yaml (or its folder), a COCO .json file (or a folder "
                            f"of them) or a VOCdevkit folder; found {found} at {path}")


_ROLE_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}


def _voc_years(path: Path) -> list[Path]:
    """The ``VOC<year>`` folders (with ``Annotations/`` inside) of a VOCdevkit folder."""
    return sorted(p for p in path.glob("VOC*") if (p / "Annotations").is_dir())


def _role(name: str, whole: bool = False) -> str | None:
    """The split a name says (``instances_val2017`` -> ``val``): its first word that names one (the whole name
    with ``whole``)."""
    words = [name.lower()] if whole else re.split(r"[^a-z]+|(?<=[a-z])(?=\d)", name.lower())
    return next((_ROLE_WORDS[w] for w in words if w in _ROLE_WORDS), None)


def coco_role(ann_file: Path) -> str:
    """The split a COCO JSON holds, from its name (``instances_val2017.json`` -> ``val``), else its folder's
    (Roboflow's ``valid/_annotations.coco.json``), else ``train``."""
    return _role(ann_file.stem) or _role(ann_file.parent.name, whole=True) or "train"


def coco_files(folder: Path) -> dict[str, Path]:
    """The COCO JSON files of a folder (``*.json``, ``annotations/*.json``, ``*/*.json``) by role; ValueError when
    two hold the same role."""
    found: dict[str, Path] = {}
    for ann_file in sorted({*folder.glob("*.json"), *folder.glob("*/*.json")}):
        role = coco_role(ann_file)
        if role in found:
            raise ValueError(f"{folder}: expected one COCO .json file per split, found {found[role].name} and "
                             f"{ann_file.relative_to(folder)} for {role!r}")
        found[role] = ann_file
    return found


def coco_image_dir(ann_file: Path) -> Path:
    """Where a JSON's ``file_name`` entries start: its folder, or for COCO's own layout
    (``annotations/instances_val2017.json``) the ``val2017/`` folder beside ``annotations/``."""
    official = ann_file.parent.parent / ann_file.stem.removeprefix("instances_")
    return official if ann_file.parent.name == "annotations" and official.is_dir() else ann_file.parent


def voc_lists(path: Path) -> tuple[Path, dict[str, str]]:
    """``(VOCdevkit root, role -> VOCDataset splits such as "2007-trainval+2012-trainval")`` of a VOC folder."""
    path = Path(path)
    if (path / "Annotations").is_dir():  # a VOC<year> folder itself
        if not path.name.startswith("VOC"):
            raise ValueError(f"{path}: expected the folder holding Annotations/ to be named VOC<year> (inside a "
                             f"VOCdevkit folder), found {path.name!r}")
        years = [path]
        path = path.parent
    else:
        years = _voc_years(path)
    roles: dict[str, list[str]] = {}
    for year_dir in years:
        year, lists = year_dir.name[3:], year_dir / "ImageSets" / "Main"
        have = {p.stem for p in lists.glob("*.txt")}
        picks = {"train": "trainval" if "trainval" in have else "train",
                 "val": "val" if "trainval" not in have else None, "test": "test"}
        for role, name in picks.items():
            if name in have:
                roles.setdefault(role, []).append(f"{year}-{name}")
    if not roles:
        raise FileNotFoundError(f"{path}: expected VOC<year>/ImageSets/Main/ with trainval.txt, train.txt, val.txt or "
                                "test.txt, found none")
    return path, {role: "+".join(specs) for role, specs in roles.items()}


def _clean(path: Path, width: int, height: int, target: dict, where: str, report: Report | None,
           box_where: list[tuple[int | None, str]]) -> ImageRecord:
    """The record of one image: boxes clamped, those of no area dropped (warned, or reported one by one).
    ``box_where``: each box's ``(line, name)`` for a report: a YOLO file's line, or VOC's ``object 3``."""
    if report is None:
        target = clean_boxes(target, height, width, where=where)
    else:
        boxes, keep = clamp_boxes(target["boxes"], height, width)
        for i in torch.nonzero(~keep).flatten().tolist():
            line, name = box_where[i]
            x1, y1, x2, y2 = target["boxes"][i].tolist()
            report(Problem("degenerate-box", where, line, f"{name + ': ' if name else ''}box ({x1:.4g}, {y1:.4g}, "
                           f"{x2:.4g}, {y2:.4g}) has no area inside the {width}x{height} image"))
        target = {key: value[keep] for key, value in target.items()}
        target["boxes"] = boxes[keep]
    return ImageRecord(path, width, height, target["boxes"], target["labels"], target["difficult"], where)


def _size(path: Path, where: str, report: Report | None) -> tuple[int, int] | None:
    try:
        return image_size(path)
    except (OSError, ValueError) as err:
        if report is None:
            raise
        report(Problem("unreadable-image", str(path), None, f"{err} (annotated in {where})"))
        return None


def read_voc(path: Path, report: Report | None = None) -> DetectionData:
    """Every split of a VOC folder (see :func:`voc_lists`); class names from ``classes.txt``, else VOC's 20."""
    root, roles = voc_lists(path)
    names = read_class_names(root)
    splits: dict[str, list[ImageRecord]] = {}
    for role, spec in roles.items():
        dataset = VOCDataset(root, spec, class_names=names)
        records = splits.setdefault(role, [])
        for year_dir, image_id in dataset.items:
            xml = year_dir / "Annotations" / f"{image_id}.xml"
            try:
                if not xml.is_file():
                    raise FileNotFoundError(f"annotation file not found: {xml} (image {image_id!r})")
                parsed = parse_voc_xml(xml, names)
            except (ValueError, FileNotFoundError) as err:
                if report is None:
                    raise
                kind = "unknown-class" if "is not one of class_names" in str(err) else "bad-label"
                report(Problem(kind, str(xml), None, str(err).removeprefix(f"{xml}, ").removeprefix(f"{xml}: ")))
                continue
            try:
                image = dataset.image_path(year_dir, image_id, parsed.pop("filename"))
            except FileNotFoundError as err:
                if report is None:
                    raise
                report(Problem("unreadable-image", str(year_dir / "JPEGImages" / image_id), None,
                               f"{err} (annotated in {xml})"))
                continue
            size = _size(image, str(xml), report)
            if size is not None:
                box_where = [(None, f"object {i}") for i in range(len(parsed["labels"]))]
                records.append(_clean(image, *size, parsed, str(xml), report, box_where))
    return DetectionData("voc", Path(path), names, splits)


def read_coco(path: Path, report: Report | None = None) -> DetectionData:
    """A COCO JSON file (one split, see :func:`coco_role`) or a folder of them; crowd boxes are left out, as
    ``CocoDataset`` leaves them out of training targets."""
    files = {coco_role(path): path} if path.is_file() else coco_files(path)
    names: tuple[str, ...] | None = None
    splits: dict[str, list[ImageRecord]] = {}
    for role, ann_file in files.items():
        try:
            dataset = CocoDataset(coco_image_dir(ann_file), ann_file)
        except ValueError as err:
            if report is None:
                raise
            kind = "unknown-class" if "is not among the categories" in str(err) else "bad-label"
            report(Problem(kind, str(ann_file), None, str(err).removeprefix(f"{ann_file}: ").removeprefix(f"{ann_file}, ")))
            continue
        if names is not None and dataset.class_names != names:
            raise ValueError(f"{ann_file}: expected the categories of the other splits {list(names)}, found "
                             f"{list(dataset.class_names)}")
        names = dataset.class_names
        records = splits.setdefault(role, [])
        for index, info in enumerate(dataset.images):
            image, where = dataset.image_dir / info["file_name"], f"{ann_file}, image {info['id']}"
            size = _size(image, where, report)
            if size is not None:
                target = {k: v for k, v in dataset.target_of(index).items() if k in ("boxes", "labels", "difficult")}
                box_where = [(None, f"annotation {ann.get('id', '?')}") for ann in dataset.annotations_of(index)]
                records.append(_clean(image, *size, target, where, report, box_where))
    if names is None:  # every file was reported unreadable
        names = ()
    return DetectionData("coco", Path(path), names, splits)


def read_yolo(path: Path, report: Report | None = None) -> DetectionData:
    """Every split of a YOLO ``data.yaml``; a bad label line raises ``file:line: ...`` (without ``report``)."""
    layout = read_data_yaml(path)
    splits: dict[str, list[ImageRecord]] = {}
    for role, sources in layout.splits.items():
        records = splits.setdefault(role, [])
        for image in image_files(sources):
            labels_path = label_file(image)
            labels, cxcywh, lines, problems = parse_label_file(labels_path, len(layout.class_names))
            if problems and report is None:
                raise ValueError(str(problems[0]))
            for problem in problems:
                report(problem)  # type: ignore[misc]
            size = _size(image, str(labels_path), report)
            if size is not None:
                target = {"boxes": to_pixels(cxcywh, *size), "labels": labels,
                          "difficult": torch.zeros(len(labels), dtype=torch.bool)}
                records.append(_clean(image, *size, target, str(labels_path), report, [(n, "") for n in lines]))
    return DetectionData("yolo", Path(path), layout.class_names, splits)


_READERS = {"voc": read_voc, "coco": read_coco, "yolo": read_yolo}


def read_data(path: str | Path, report: Report | None = None) -> DetectionData:
    """Every split of the dataset at ``path``, in whichever of the three formats it is (:func:`detect_format`)."""
    path = Path(path)
    return _READERS[detect_format(path)](path, report)
