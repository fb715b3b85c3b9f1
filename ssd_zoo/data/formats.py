"""Open or convert a dataset in any of the three formats, told apart by what is there.

- a ``data.yaml`` file, or a folder holding one: YOLO (:class:`~ssd_zoo.data.yolo.YoloDataset`);
- a ``.json`` file, or a folder of them (one per split, e.g. ``train.json``, ``val.json``): COCO
  (:class:`~ssd_zoo.data.coco.CocoDataset`; images found from the JSON's folder);
- a VOCdevkit folder (``VOC2007/`` etc. inside), or a ``VOC<year>`` folder (``Annotations/`` inside): VOC
  (:class:`~ssd_zoo.data.voc.VOCDataset`; class names from ``classes.txt``, else VOC's 20).

Splits are named ``train``, ``val``, ``test`` in every format (see :mod:`ssd_zoo.data.records` for what they
mean in VOC and COCO).

    >>> dataset = open_dataset("shapes/", "train")            # a VOCdevkit folder: its trainval lists
    >>> convert("shapes/", "shapes_yolo/", "yolo")             # then open_dataset("shapes_yolo/", "train")
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ssd_zoo.data.coco import CocoDataset
from ssd_zoo.data.common import Transforms
from ssd_zoo.data.records import coco_files, coco_image_dir, coco_role, detect_format, read_data, voc_lists
from ssd_zoo.data.voc import VOCDataset
from ssd_zoo.data.writers import write_data
from ssd_zoo.data.yolo import YoloDataset, read_data_yaml


def list_splits(path: str | Path) -> tuple[str, ...]:
    """The splits (``train``, ``val``, ``test``) the dataset at ``path`` has, in that order."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "yolo":
        have = set(read_data_yaml(path).splits)
    elif fmt == "coco":
        have = {coco_role(path)} if path.is_file() else set(coco_files(path))
    else:
        have = set(voc_lists(path)[1])
    return tuple(split for split in ("train", "val", "test") if split in have)


def open_dataset(path: str | Path, split: str = "train", *, transforms: Transforms | None = None,
                 keep_difficult: bool = True) -> Dataset:
    """The ``split`` of the dataset at ``path`` (any of the three formats; see the module docstring).

    ``split``: ``train``, ``val`` or ``test``; for VOC also image sets as ``VOCDataset`` takes them
    (``"2007-trainval+2012-trainval"``). A COCO ``.json`` file is one split, the one its name says
    (``instances_val2017.json``: ``val``; a name without ``train``, ``val`` or ``test``: ``train``).
    ``transforms`` as the datasets take them; ``keep_difficult`` for VOC (the other formats have no difficult
    boxes). The dataset has ``class_names`` (label = index + 1) and ``ids``; its items are
    ``(image, target)`` in the same types whatever the format. ValueError naming the splits there are when
    ``split`` is not one of them.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "yolo":
        return YoloDataset(path, split, transforms=transforms)
    if fmt == "coco":
        files = {coco_role(path): path} if path.is_file() else coco_files(path)
        if split not in files:  # a train file opened as val would report training-set accuracy
            raise ValueError(f"{path}: expected a COCO .json file for the split {split!r}, found the splits "
                             f"{sorted(files)} (named from the file names: see ssd_zoo.data.records.coco_role)")
        ann_file = files[split]
        return CocoDataset(coco_image_dir(ann_file), ann_file, transforms=transforms)
    root, roles = voc_lists(path)
    if "-" in split:
        spec = split
    elif split in roles:
        spec = roles[split]
    else:
        raise ValueError(f"{path}: expected the split {split!r} (an ImageSets/Main list), found the splits "
                         f"{sorted(roles)}")
    return VOCDataset(root, spec, keep_difficult=keep_difficult, transforms=transforms)


def convert(source: str | Path, out: str | Path, to: str) -> Path:
    """Read every split of the dataset at ``source`` and write it as a ``to`` (``voc``, ``coco``, ``yolo``) folder
    at ``out``, images copied (see :mod:`ssd_zoo.data.writers`); returns ``out``. A bad label raises (naming
    its file and line) before anything is written; ``out`` must be new (or an empty folder)."""
    return write_data(read_data(source), out, to)
