"""Which class each class-predictor row of a weights file is: what the file says, else the best evidence there is.

A file names its classes where it records them: ssd_zoo's model record (``categories``), a recipe checkpoint's
``"class_names"`` next to its weights, a published entry's ``meta["categories"]``. Where it records none, in
this order (the first that applies decides):

1. the caller's own list for the file (``ssd_zoo.build(..., weights_class_names=[...])``, the recipes'
   ``weights_class_names:`` key) - it overrides even what the file records;
2. what the file records (above);
3. a published file, recognised by the SHA-256 prefix its entry records (in the file name, as torch.hub names
   its cache, else of the file's bytes): that entry's names;
4. the label space the file's layout fixes for its class count (``Layout.label_spaces``: torchvision's 91 COCO
   ids, ssd.pytorch's / lufficc's / qfgaohao's 21 VOC classes or COCO's 80, NVIDIA's 80), said in one
   :class:`~ssd_zoo.finetune.surgery.ClassNamesWarning`;
5. none: the head surgery (:func:`ssd_zoo.finetune.surgery.plan`) then carries every row in order where the
   model has as many classes (warning that the order was assumed) and raises where it has another count,
   unless the caller asked for that count with ``num_classes=`` (fresh rows).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ssd_zoo.finetune import surgery
from ssd_zoo.weights import convert
from ssd_zoo.weights.published import LABEL_SPACES, recognise_file, weights_name


@dataclass(frozen=True)
class FileClasses:
    """The class names of a file's rows and how they are known.

    Attributes:
        names: ``num_classes`` names, background first; None where nothing names them.
        origin: how they are known, for messages ("recorded in the file", "given as weights_class_names",
            "published entry X (SHA-256 prefix ...)", "the ssd.pytorch layout's label space VOC for 21 classes").
    """

    names: tuple[str, ...] | None
    origin: str


def given_names(names: Sequence[str], num_classes: int | None, where: str) -> tuple[str, ...]:
    """``weights_class_names`` (labels ``1..K`` of the file, no background) checked against the file's
    ``num_classes`` (with background, None: unknown) -> the names with background first."""
    names = [str(n) for n in names]
    if any(n.strip().lower() == surgery.BACKGROUND for n in names):
        raise ValueError(f"weights_class_names: expected the names of {where}'s labels 1..K, found {surgery.BACKGROUND!r}; "
                         "background (label 0) is implicit, leave it out")
    if num_classes is not None and len(names) != num_classes - 1:
        raise ValueError(f"weights_class_names: expected {num_classes - 1} names ({where} was trained for "
                         f"{num_classes} classes with background), found {len(names)}")
    return (surgery.BACKGROUND, *names)


def file_classes(num_classes: int | None, *, given: Sequence[str] | None, recorded: Sequence[str] | None,
                 layout: str, where: str, file_name: str | None = None,
                 sha256: Callable[[], str] | None = None) -> FileClasses:
    """The names of a file's ``num_classes`` rows by the order of the module docstring.

    Args:
        given: the caller's names for the file (background first), or None.
        recorded: the names the file or its published entry records (background first), or None.
        layout: the file's layout (:mod:`ssd_zoo.weights.convert`), whose ``label_spaces`` apply last.
        where: the file, for messages. ``file_name`` / ``sha256``: its name and a function returning the SHA-256
            (hex) of its bytes, to recognise a published file (None: not a file, e.g. already published).
    """
    if given is not None:
        return FileClasses(tuple(given), "given as weights_class_names")
    if recorded is not None:
        return FileClasses(tuple(recorded), f"recorded in {where}")
    if num_classes is None:
        return FileClasses(None, f"{where} records no class names")
    if file_name is not None:
        entry = recognise_file(file_name, sha256)
        if entry is not None and entry.meta["num_classes"] == num_classes and entry.meta.get("categories"):
            return FileClasses(tuple(entry.meta["categories"]),
                               f"those of the published {weights_name(entry)} (SHA-256 prefix {entry.meta['sha256']})")
    # A graph read by a file reader (TF Object Detection API) has no state-dict layout, so no label space.
    space = convert.get_layout(layout).label_spaces.get(num_classes) if layout in convert.LAYOUTS else None
    if space is not None:
        origin = f"the {layout} layout's label space for {num_classes} classes, {space}"
        warnings.warn(f"{where} records no class names: its {num_classes} classes are taken as {origin} (its "
                      "publisher's code fixes them); if they are others, pass weights_class_names=[...] (labels 1.."
                      f"{num_classes - 1}, in the file's order)", surgery.ClassNamesWarning, stacklevel=2)
        return FileClasses(tuple(LABEL_SPACES[space]), origin)
    return FileClasses(None, f"{where} records no class names")
