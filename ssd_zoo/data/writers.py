"""Write a dataset held in memory (:class:`~ssd_zoo.data.records.DetectionData`) as a VOC, COCO or YOLO folder.

What each writer lays out (``<split>`` is ``train``, ``val``, ``test``: the splits the data has)::

    voc:   OUT/classes.txt  OUT/VOC2007/JPEGImages/<name>.<ext>  OUT/VOC2007/Annotations/<name>.xml
           OUT/VOC2007/ImageSets/Main/<split>.txt
    coco:  OUT/<split>.json  OUT/images/<split>/<name>.<ext>       (file_name "images/<split>/<name>.<ext>")
    yolo:  OUT/data.yaml     OUT/images/<split>/<name>.<ext>       OUT/labels/<split>/<name>.txt

Images are copied as they are (same bytes, same suffix); ``<name>`` is the source image's file stem, with
``_1``, ``_2``, ... added where two images of the output would share one. Each file is written with
:func:`ssd_zoo.files.write_atomic` into a hidden folder beside ``OUT``, renamed to ``OUT`` once all is written:
an interrupted conversion leaves no half-written dataset. ``OUT`` must not exist (an empty folder is allowed);
nothing is ever overwritten.

What does not carry over: VOC's ``difficult`` flag (COCO and YOLO have none: such boxes become ordinary boxes);
VOC coordinates are written to 0.01 px, YOLO's to 7 decimals of the image side. A YOLO ``data.yaml`` needs a
``val`` split: data without one (VOC's trainval/test) gets ``val:`` naming the test images.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import yaml

from ssd_zoo.data.records import FORMATS, DetectionData, ImageRecord
from ssd_zoo.data.voc import CLASSES_FILE
from ssd_zoo.files import write_atomic


def _names(data: DetectionData) -> dict[str, list[tuple[str, ImageRecord]]]:
    """Each split's ``(output stem, record)``: one stem per image file, stems unique across the whole output."""
    name_of: dict[Path, str] = {}  # an image in two splits (YOLO's val and test) keeps one name
    used: set[str] = set()
    named: dict[str, list[tuple[str, ImageRecord]]] = {}
    for split, records in data.splits.items():
        for record in records:
            if record.path not in name_of:
                stem, k = record.path.stem, 0
                while (stem if k == 0 else f"{stem}_{k}") in used:
                    k += 1
                name_of[record.path] = stem if k == 0 else f"{stem}_{k}"
                used.add(name_of[record.path])
            named.setdefault(split, []).append((name_of[record.path], record))
    return named


def _text(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def _copy(source: Path, path: Path) -> None:
    with open(source, "rb") as src:
        write_atomic(path, lambda f: shutil.copyfileobj(src, f))


def _number(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _voc(data: DetectionData, out: Path) -> None:
    year = out / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / sub).mkdir(parents=True)
    _text(out / CLASSES_FILE, "".join(f"{name}\n" for name in data.class_names))
    written: set[str] = set()
    for split, named in _names(data).items():
        for name, record in named:
            if name in written:
                continue  # already written for another split (VOC's images are shared by its lists)
            written.add(name)
            image = f"{name}{record.path.suffix}"
            _copy(record.path, year / "JPEGImages" / image)
            root = ET.Element("annotation")
            ET.SubElement(root, "folder").text = "VOC2007"
            ET.SubElement(root, "filename").text = image
            size = ET.SubElement(root, "size")
            for tag, value in (("width", record.width), ("height", record.height), ("depth", 3)):
                ET.SubElement(size, tag).text = str(value)
            for box, label, difficult in zip(record.boxes.tolist(), record.labels.tolist(), record.difficult.tolist()):
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = data.class_names[label - 1]
                ET.SubElement(obj, "difficult").text = str(int(difficult))
                bndbox = ET.SubElement(obj, "bndbox")
                for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
                    ET.SubElement(bndbox, tag).text = _number(value + 1, 2)  # VOC's XML is 1-based
            ET.indent(root)
            _text(year / "Annotations" / f"{name}.xml", ET.tostring(root, encoding="unicode") + "\n")
        _text(year / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{name}\n" for name, _ in named))


def _coco(data: DetectionData, out: Path) -> None:
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(data.class_names)]
    for split, named in _names(data).items():
        (out / "images" / split).mkdir(parents=True)
        images, annotations = [], []
        for image_id, (name, record) in enumerate(named, start=1):
            file_name = f"images/{split}/{name}{record.path.suffix}"
            _copy(record.path, out / file_name)
            images.append({"id": image_id, "file_name": file_name, "width": record.width, "height": record.height})
            for (x1, y1, x2, y2), label in zip(record.boxes.tolist(), record.labels.tolist()):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        document = {"images": images, "annotations": annotations, "categories": categories}
        _text(out / f"{split}.json", json.dumps(document))


def _yolo(data: DetectionData, out: Path) -> None:
    keys: dict[str, object] = {"path": "."}
    for split, named in _names(data).items():
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        keys[split] = f"images/{split}"
        for name, record in named:
            _copy(record.path, out / "images" / split / f"{name}{record.path.suffix}")
            lines = []
            for (x1, y1, x2, y2), label in zip(record.boxes.tolist(), record.labels.tolist()):
                values = ((x1 + x2) / 2 / record.width, (y1 + y2) / 2 / record.height,
                          (x2 - x1) / record.width, (y2 - y1) / record.height)
                lines.append(" ".join([str(label - 1), *(_number(v, 7) for v in values)]) + "\n")
            _text(out / "labels" / split / f"{name}.txt", "".join(lines))
    if "val" not in keys and "test" in keys:
        keys["val"] = keys["test"]  # ultralytics needs a val split
    ordered = {k: keys[k] for k in ("path", "train", "val", "test") if k in keys}
    _text(out / "data.yaml", yaml.safe_dump({**ordered, "names": list(data.class_names)}, sort_keys=False))


_WRITERS: dict[str, Callable[[DetectionData, Path], None]] = {"voc": _voc, "coco": _coco, "yolo": _yolo}


def write_data(data: DetectionData, out: str | Path, fmt: str) -> Path:
    """Write ``data`` as a ``fmt`` (``voc``, ``coco``, ``yolo``) folder at ``out`` (see the module docstring);
    returns ``out``. FileExistsError when ``out`` exists and is not an empty folder."""
    out = Path(out)
    if fmt not in _WRITERS:
        raise ValueError(f"expected an output format among {FORMATS}, found {fmt!r}")
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise FileExistsError(f"{out} already exists; expected a new (or empty) output folder: nothing is overwritten")
    if not data.class_names:
        raise ValueError(f"{data.source}: expected class names to write, found none")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _WRITERS[fmt](data, staging)
        if out.is_dir():
            out.rmdir()  # the empty folder allowed above; rmdir refuses if something appeared since
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
