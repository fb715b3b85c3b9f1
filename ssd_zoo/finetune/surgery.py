"""Head surgery: weights trained for one set of classes, loaded into an SSD for another.

Everything that does not depend on the classes (backbone, extra layers, box regression, the classification
head's depthwise layers in SSDLite) loads as it is. Only the *class predictors* change: the last convolution
of each level's classification head, ``[k * C, ...]`` for ``k`` default boxes per location and ``C`` classes.
Their channels are box-major (``channel = box * C + class``) in every layout ssd_zoo reads, so carrying the
row of a class means taking channel ``box * C_source + source_class`` into ``box * C + class`` for every box.
The rows of classes the weights know are carried over (so their logits are the source model's, on any image);
the others keep the values the freshly built model gave them (its head's ``reset_parameters``).

Class names match case-insensitively, ignoring spaces, underscores and hyphens, and with :data:`SYNONYMS`:
the spellings VOC and COCO use for the same class.

    >>> ssd_zoo.build("ssd300_vgg16", weights="COCO_V1", class_names=["aeroplane", ..., "tvmonitor"])  # VOC
    >>> ssd_zoo.build("ssd300_vgg16", weights="VOC0712", num_classes=4)   # 3 new classes, all rows fresh

This module imports nothing of ssd_zoo but :mod:`ssd_zoo.models.record` (the model record's encoding).
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ssd_zoo.models.record import RECORD_STATE_KEY, encode_record, split_record

BACKGROUND = "__background__"
# Spellings of the same class in VOC (left) and COCO (right); matched both ways. "dining table" and
# "diningtable" (or "potted plant" and "pottedplant") are equal anyway: spaces are ignored.
SYNONYMS: dict[str, str] = {
    "aeroplane": "airplane", "motorbike": "motorcycle", "sofa": "couch", "tvmonitor": "tv",
    "diningtable": "dining table", "pottedplant": "potted plant",
}
_PLACEHOLDERS = {"n/a", BACKGROUND}  # torchvision's unused COCO ids are "N/A": never matched


class HeadSurgeryWarning(UserWarning):
    """Class-predictor rows were initialised afresh (``warnings.filterwarnings("ignore", category=...)``)."""


class ClassNamesWarning(UserWarning):
    """A file's class names were not recorded but inferred: from its layout's label space, or its rows taken in
    the order of the names asked for (see :mod:`ssd_zoo.weights.file_classes`)."""


def _plain(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.lower())


_SYNONYM_KEYS = {_plain(voc): _plain(coco) for voc, coco in SYNONYMS.items()}


def name_key(name: str) -> str:
    """The key two names of the same class share: lower case, no spaces/underscores/hyphens, COCO's spelling."""
    key = _plain(name)
    return _SYNONYM_KEYS.get(key, key)


def check_class_names(class_names: Sequence[str], num_classes: int | None = None) -> list[str]:
    """``class_names`` (labels ``1..K``, no background) checked; ValueError for an empty or duplicate name,
    a background entry, or a ``num_classes`` other than ``K + 1``."""
    if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
        raise ValueError(f"class_names: expected a list of strings (labels 1..K), found {class_names!r}")
    names = list(class_names)
    if not names:
        raise ValueError("class_names: expected at least one name (labels 1..K), found an empty list")
    for index, name in enumerate(names):
        if not name.strip():
            raise ValueError(f"class_names[{index}]: expected a name, found {name!r}")
        if name.strip().lower() == BACKGROUND:
            raise ValueError(f"class_names[{index}]: expected the names of labels 1..K, found {name!r}; background "
                             "(label 0) is implicit, leave it out")
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name_key(name) in seen:
            raise ValueError(f"class_names: {name!r} (index {index}) names the same class as "
                             f"{names[seen[name_key(name)]]!r} (index {seen[name_key(name)]}); expected distinct names")
        seen[name_key(name)] = index
    if num_classes is not None and num_classes != len(names) + 1:
        raise ValueError(f"num_classes={num_classes} contradicts class_names: {len(names)} names are "
                         f"{len(names) + 1} classes with background; pass one of them")
    return names


def match_classes(target: Sequence[str], source: Sequence[str] | None) -> list[int | None]:
    """For each class of ``target`` (background first), the index of the same class in ``source``
    (background first; None: names unknown), else None. Background always matches background."""
    lookup: dict[str, int] = {}
    for index, name in enumerate(source or []):
        if index > 0 and name.strip().lower() not in _PLACEHOLDERS:
            lookup.setdefault(name_key(name), index)  # a name listed twice: its first row
    return [0] + [lookup.get(name_key(name)) for name in target[1:]]


@dataclass(frozen=True)
class ClassMap:
    """Which class-predictor row of the weights fills each row of the model.

    Attributes:
        source_classes / target_classes: classes with background, of the weights and of the model.
        rows: ``target_classes`` entries: the source class carried into that class, None: initialised afresh.
        target_names: the model's names (background first), None where not given.
        source_names: the weights' names (background first), None where they do not record them.
    """

    source_classes: int
    target_classes: int
    rows: tuple[int | None, ...]
    target_names: tuple[str, ...] | None = None
    source_names: tuple[str, ...] | None = None

    def describe(self, source: str) -> str:
        """What the surgery keeps and initialises, and why (the text of the warning)."""
        names = self.target_names or tuple(f"class {i}" for i in range(self.target_classes))
        fresh = [names[t] for t, s in enumerate(self.rows) if s is None]
        if self.target_names is None:
            why = f"no class_names were given to match against the weights' {self.source_classes - 1} classes"
        elif self.source_names is None:
            why = f"{source} records no class names to match them with"
        else:
            why = f"{source} does not know these classes (names compared as in ssd_zoo.finetune.surgery.name_key)"
        carried = [names[t] + (f" <- {self.source_names[s]}" if self.source_names and t and
                               self.source_names[s] != names[t] else "")
                   for t, s in enumerate(self.rows) if s is not None]
        return (f"head surgery: {source} was trained for {self.source_classes} classes (with background), the model "
                f"has {self.target_classes}; the class predictors' rows of {len(fresh)} classes {fresh} were "
                f"initialised afresh (as the model's head initialises them) because {why}; carried over: "
                f"{len(carried)} classes {carried}; every other tensor was loaded as it is")


def plan(source_classes: int | None, source_names: Sequence[str] | None, num_classes: int,
         class_names: Sequence[str] | None, *, fresh_rows: bool = False, where: str = "weights") -> ClassMap | None:
    """The :class:`ClassMap` from weights of ``source_classes`` (names ``source_names``, background first)
    to a model of ``num_classes`` named ``class_names`` (background first, or None); None where the weights
    fit as they are (or their class count is unknown: the load then reports the shapes).

    Weights without names (``source_names`` None) and a model with names: the same class count carries every
    row in order, with a :class:`ClassNamesWarning` that the order was assumed; another count starts the class
    rows afresh only with ``fresh_rows`` (the caller asked for ``num_classes``), else raises ValueError saying
    how to name the weights' classes. ``where``: the weights, for messages."""
    if source_classes is None:
        return None
    names = tuple(class_names) if class_names is not None else None
    known = tuple(source_names) if source_names is not None else None
    if names is None:
        if num_classes == source_classes:
            return None
        rows: list[int | None] = [None] * num_classes  # no names: nothing says which class is which
    elif known is None:
        if num_classes == source_classes:
            warnings.warn(f"{where} records no class names: its {source_classes - 1} classes are taken to be "
                          f"{list(names[1:])} in that order (label 1 = {names[1]!r}); if the file's order differs, "
                          "pass weights_class_names=[...] (its labels 1..K in order; recipes: weights_class_names)",
                          ClassNamesWarning, stacklevel=4)
            return None
        if not fresh_rows:
            raise ValueError(
                f"{where} records no class names and was trained for {source_classes - 1} classes, the model asks for "
                f"{num_classes - 1} ({list(names[1:6])}{'...' if num_classes > 6 else ''}): nothing says which row is "
                "which class. Name the file's classes with weights_class_names=[...] (its labels 1.."
                f"{source_classes - 1} in order; recipes: the weights_class_names key), or pass num_classes="
                f"{num_classes} as well to start every class row afresh (head surgery)")
        rows = match_classes(names, None)  # the background only
    else:
        if known is not None and num_classes == source_classes and names[1:] == known[1:]:
            return None
        rows = match_classes(names, known)
    return ClassMap(source_classes, num_classes, tuple(rows), names, known)


def class_predictors(model: nn.Module) -> dict[str, nn.Conv2d]:
    """The class predictors of ``model``, by their module names (e.g. ``head.classification.0`` or, in
    SSDLite, ``head.classification.0.pointwise``): the last conv of each entry of ``model.head.classification``."""
    levels = getattr(getattr(model, "head", None), "classification", None)
    if not isinstance(levels, nn.ModuleList):
        raise ValueError(f"head surgery: expected a model whose head has a 'classification' ModuleList (one entry "
                         f"per feature map), found {type(getattr(model, 'head', None)).__name__}")
    names = {id(module): name for name, module in model.named_modules()}
    found = {}
    for level, block in enumerate(levels):
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError(f"head surgery: head.classification[{level}] has no Conv2d, found {type(block).__name__}")
        found[names[id(convs[-1])]] = convs[-1]
    return found


def _carry_rows(source: Tensor, fresh: Tensor, class_map: ClassMap, key: str, where: str) -> Tensor:
    """``fresh`` ``[k*C, ...]`` with the rows of carried classes taken from ``source`` ``[k*C_source, ...]``."""
    boxes = fresh.shape[0] // class_map.target_classes
    expected = (boxes * class_map.source_classes, *fresh.shape[1:])
    if tuple(source.shape) != expected:
        raise ValueError(f"{where}: {key} does not fit the model: expected {expected} ({boxes} default boxes x "
                         f"{class_map.source_classes} classes), found {tuple(source.shape)}")
    out = fresh.detach().clone().reshape(boxes, class_map.target_classes, *fresh.shape[1:])
    pairs = [(t, s) for t, s in enumerate(class_map.rows) if s is not None]
    if pairs:
        rows = source.reshape(boxes, class_map.source_classes, *fresh.shape[1:])
        targets, sources = zip(*pairs)
        out[:, list(targets)] = rows[:, list(sources)].to(out.dtype)
    return out.reshape(fresh.shape)


def _check_the_rest(own: dict[str, Tensor], state: dict[str, Tensor], skip: set[str], where: str) -> None:
    """Every tensor but the class predictors must be the model's, with its shape; ValueError otherwise."""
    mine, theirs = set(own) - skip, set(state) - skip
    missing, unexpected = sorted(mine - theirs), sorted(theirs - mine)
    shapes = {k: (tuple(own[k].shape), tuple(state[k].shape)) for k in sorted(mine & theirs)
              if own[k].shape != state[k].shape}
    if missing or unexpected or shapes:
        saved = (split_record(state)[1] or {}).get("builder")
        origin = ""
        if saved:
            arguments = ", ".join(f"{k}={v!r}" for k, v in saved["kwargs"].items())
            origin = f" (saved from ssd_zoo.build({saved['name']!r}{', ' if arguments else ''}{arguments}))"
        raise ValueError(
            f"{where}{origin} does not fit this model: head surgery replaces only the class predictors, every "
            f"other tensor (backbone, extras, box regression) must match; expected {len(mine)} such tensors, found "
            f"{len(theirs)}: {len(missing)} missing {missing[:4]}, {len(unexpected)} unexpected {unexpected[:4]}, "
            f"{len(shapes)} mis-shaped (expected, found) {dict(list(shapes.items())[:4])}")


def apply(model: nn.Module, state_dict: dict[str, Tensor], class_map: ClassMap,
          where: str = "weights") -> dict[str, Tensor]:
    """``state_dict`` (ssd_zoo's layout, trained for ``class_map.source_classes``) made to fit ``model``
    (built for ``class_map.target_classes``): class predictors per :class:`ClassMap`, the model record's
    classes updated, every other tensor as it is. Warns once (:class:`HeadSurgeryWarning`) where rows are fresh."""
    own = model.state_dict()
    predictors = class_predictors(model)
    keys = {f"{name}.{param}" for name, conv in predictors.items() for param, _ in conv.named_parameters(recurse=False)}
    _check_the_rest(own, state_dict, keys | {RECORD_STATE_KEY}, where)
    out = dict(state_dict)
    with torch.no_grad():
        for key in sorted(keys):
            if key not in state_dict:
                raise ValueError(f"{where}: expected the class predictor {key!r}, found no such key")
            out[key] = _carry_rows(state_dict[key], own[key], class_map, key, where)
    record = split_record(state_dict)[1]
    if record is not None:
        names = list(class_map.target_names) if class_map.target_names is not None else None
        out[RECORD_STATE_KEY] = encode_record({**record, "num_classes": class_map.target_classes, "categories": names})
    if None in class_map.rows:
        warnings.warn(class_map.describe(where), HeadSurgeryWarning, stacklevel=2)
    return out
