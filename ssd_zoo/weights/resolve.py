"""Loading SSD weights: published ones by name (:mod:`ssd_zoo.weights.published`), local files and URLs, any layout.

What a user passes as ``weights=`` is resolved by one function (:func:`resolve_weights`: an enum member, a
``"NAME"`` / ``"model.NAME"`` string, a path or a URL), read by one (:func:`read_weights`: downloads and files
through :mod:`ssd_zoo.files`, any layout converted by :mod:`ssd_zoo.weights.convert`) and loaded by one, with one
key/shape check (:func:`load_state_dict`). The published enums and their lookup are re-exported here.
"""
from __future__ import annotations

import dataclasses
import os
import urllib.parse
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from torch import Tensor, nn
from torchvision.models import WeightsEnum

from ssd_zoo import files
from ssd_zoo.finetune import surgery
from ssd_zoo.models.record import RECORD_STATE_KEY, encode_record, split_record
from ssd_zoo.ops.default_boxes import DefaultBoxSpec
from ssd_zoo.weights import convert
from ssd_zoo.weights.file_classes import FileClasses, file_classes, given_names
from ssd_zoo.weights.published import (COCO80_CATEGORIES, COCO_CATEGORIES, VOC_CATEGORIES, list_weights,
                                       lookup_weights, weights_name)

Resolved = "WeightsEnum | Path | str | Checkpoint"  # a published entry, a local file, a URL (str), or read


def resolve_weights(weights: Any, model_name: str, pretrained: bool | None = None) -> Resolved | None:
    """What ``weights=`` means for the model ``model_name``: None, a member of its enum, a local file or a URL.

    Accepts None, ``"DEFAULT"``, a member name (``"VOC0712"``, ``"SSD300_VGG16_Weights.VOC0712"``,
    ``"ssd300_vgg16.VOC0712"``), a ``WeightsEnum`` member whose ``meta["model"]`` is ``model_name``, a path
    (str or ``os.PathLike``), an ``http(s)://`` / ``file://`` URL (returned as the string), or a
    :class:`Checkpoint` already read (returned as it is).
    ``pretrained=True`` (deprecated, as in torchvision) means ``"DEFAULT"``.
    """
    if pretrained is not None:
        warnings.warn("'pretrained' is deprecated; use weights='DEFAULT' (or weights=None)", FutureWarning, stacklevel=3)
        if pretrained and weights is not None:
            raise ValueError(f"pass either weights={weights!r} or pretrained=True, not both")
        weights = "DEFAULT" if pretrained else weights
    if weights is None or isinstance(weights, (Path, Checkpoint)):
        return weights
    if isinstance(weights, WeightsEnum):
        if weights.meta.get("model", model_name) != model_name:
            raise ValueError(f"weights {weights_name(weights)} are for {weights.meta['model']!r}, not {model_name!r}")
        return weights
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights: expected None, a name, a WeightsEnum member, a path or a URL, "
                        f"found {type(weights).__name__}")
    name = os.fspath(weights)
    if files.is_url(name):
        return name
    member = lookup_weights(name, model_name)
    if member is not None:
        return member
    if os.path.isfile(name):
        return Path(name)
    names = [n.rpartition(".")[2] for n in list_weights(model_name)]
    known = f"one of {names + ['DEFAULT']}" if names else f"no published weights for {model_name} (see list_weights())"
    raise ValueError(f"weights={name!r} for {model_name}: expected a weights name ({known}), a URL or a checkpoint "
                     f"file, but no file exists at {name!r}")


def download_state_dict(weights: WeightsEnum, progress: bool = True) -> dict[str, Any]:
    """The published file of ``weights``, as stored (its own layout), from torch.hub's cache or its URL
    (see :func:`ssd_zoo.files.download`; the sha256 prefix in ``meta["sha256"]`` is checked). An entry whose
    publisher gives no stable link says where to get the file in ``meta["where_to_get"]``, added to the error."""
    meta = weights.meta
    try:
        return files.download(weights.url, file_name=meta["file_name"], sha256=meta["sha256"], progress=progress,
                            what=weights_name(weights))
    except RuntimeError as error:
        if not meta.get("where_to_get"):
            raise
        raise RuntimeError(f"{error}. Where to get it: {meta['where_to_get']}") from error


def _read_raw(weights: Resolved, progress: bool) -> dict[str, Any]:
    """The file that resolved ``weights`` point at, as stored (a state dict, or a training checkpoint around one)."""
    if isinstance(weights, WeightsEnum):
        return download_state_dict(weights, progress)
    if isinstance(weights, Path):
        return files.read_file(weights)
    return files.download(weights, progress=progress)


def _read_stored(weights: Resolved, progress: bool) -> dict[str, Any]:
    """The file that resolved ``weights`` point at, as stored, its training-state wrapper removed."""
    return convert.unwrap(_read_raw(weights, progress))


def wrapper_class_names(raw: Any) -> tuple[str, ...] | None:
    """The class names a training checkpoint records next to its weights (background first): the recipes'
    ``{"model": ..., "class_names": [labels 1..K]}`` (train_voc.py since its first version), else None."""
    names = raw.get("class_names") if isinstance(raw, dict) and isinstance(raw.get("model"), dict) else None
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        return None
    return (surgery.BACKGROUND, *names)


@dataclass
class Checkpoint:
    """Weights ready to load into an ssd_zoo model; named weights are downloaded only when first needed.

    Attributes:
        read: returns the state dict (parameter name -> tensor) in ssd_zoo's layout.
        source: the URL or path it comes from (for error messages).
        layout: the layout it is stored in ("ssd_zoo", "torchvision" or "ssd.pytorch").
        num_classes: classes with background (None where the head was not recognised).
        anchors: the default-box preset it was trained with, where known ("voc", "coco" or None).
        weights: the named entry it comes from, None for a file or URL.
        record: ssd_zoo's model record saved with the weights (see ``SSD.record``: input size,
            default boxes, normalisation, classes), None for other layouts and older files.
        class_map: set by :meth:`retarget`: the head surgery that makes the weights fit a model for other
            classes (:mod:`ssd_zoo.finetune.surgery`); ``num_classes`` and ``categories`` are then the model's.
        architecture: returns ``(registered model name, builder keywords)`` the file fits (its layout's
            :attr:`~ssd_zoo.weights.convert.Layout.model`), for :func:`load`; ValueError where it cannot tell.
        wrapper_names: class names (background first) a training checkpoint records next to its weights.
        given_names: the caller's names for the file's classes (``weights_class_names``, background first).
        file: the local file it was read from (to recognise a published file by its SHA-256), else None.
    """

    read: Callable[[], dict[str, Tensor]]
    source: str
    layout: str
    num_classes: int | None
    anchors: str | None
    weights: WeightsEnum | None = None
    record: dict[str, Any] | None = None
    class_map: surgery.ClassMap | None = None
    architecture: Callable[[], tuple[str, dict[str, Any]]] | None = None
    wrapper_names: tuple[str, ...] | None = None
    given_names: tuple[str, ...] | None = None
    file: Path | None = None

    @cached_property
    def state_dict(self) -> dict[str, Tensor]:
        return self.read()

    @property
    def name(self) -> str:
        return weights_name(self.weights) if self.weights is not None else self.source

    def load_into(self, model: nn.Module) -> nn.Module:
        """Copy the tensors into ``model`` (every key and shape must match, after the head surgery that
        :meth:`retarget` planned) and return it."""
        state = self.state_dict
        if self.class_map is not None:
            state = surgery.apply(model, state, self.class_map, self.name)
        elif self.given_names is not None and RECORD_STATE_KEY in state:  # the caller's names win over the record's
            record = split_record(state)[1]
            state = {**state, RECORD_STATE_KEY: encode_record({**record, "categories": list(self.given_names)})}
        return load_state_dict(model, state, self.source)

    def retarget(self, num_classes: int, class_names: Sequence[str] | None = None, *,
                 fresh_rows: bool = False) -> Checkpoint:
        """These weights for a model of ``num_classes`` (with background) named ``class_names`` (background
        first, or None): itself where they fit, else a copy whose :meth:`load_into` carries the class-predictor
        rows of the classes the weights know and keeps the model's own initialisation for the others
        (:func:`ssd_zoo.finetune.surgery.plan`; ``fresh_rows``: the caller asked for ``num_classes``, so
        weights that name no classes may start every class row afresh). Nothing is downloaded here."""
        if self.class_map is not None:  # retargeted before: plan from the weights' own classes
            original = dataclasses.replace(self, num_classes=self.class_map.source_classes, class_map=None)
            return original.retarget(num_classes, class_names, fresh_rows=fresh_rows)
        class_map = surgery.plan(self.num_classes, self.categories, num_classes, class_names, fresh_rows=fresh_rows,
                                 where=self.name)
        if class_map is None:
            return self
        return dataclasses.replace(self, num_classes=num_classes, class_map=class_map)

    def config(self, num_classes: int | None, anchors: str | None, default_anchors: str = "voc") -> tuple[int, str]:
        """``(num_classes, anchors)`` for the builder: the caller's, else the checkpoint's. A caller's value
        that contradicts named weights raises ValueError (for a local file, an explicit ``anchors`` wins)."""
        if num_classes is not None and self.num_classes is not None and num_classes != self.num_classes:
            raise ValueError(f"num_classes={num_classes} conflicts with weights {self.name}, trained for "
                             f"{self.num_classes} classes (with background); leave num_classes out, build without "
                             "weights, or build with ssd_zoo.build(name, weights=..., num_classes=...) (head surgery)")
        if self.weights is not None and anchors is not None and anchors != self.anchors:
            raise ValueError(f"anchors={anchors!r} conflicts with weights {self.name}, trained with anchors={self.anchors!r}")
        return (num_classes or self.num_classes or DEFAULT_NUM_CLASSES), (anchors or self.anchors or default_anchors)

    @property
    def input_size(self) -> int | None:
        """The input size the weights were trained at, where known."""
        if self.record is not None:
            return self.record["input_size"]
        return self.weights.meta["input_size"] if self.weights is not None else None

    def default_boxes(self, spec: DefaultBoxSpec, explicit: bool) -> DefaultBoxSpec:
        """The default boxes to build: the record's, else ``spec`` (from the arguments or the layout's preset).

        ``explicit``: the caller chose ``spec`` (``anchors=``, ``box_sizes=``, ...); boxes other than the
        record's then raise ValueError naming both, as does a record for another input size.
        """
        if self.record is None:
            if self.layout == "ssd_zoo" and not explicit:
                warnings.warn(f"{self.name} carries no ssd_zoo model record (saved before ssd_zoo 0.2): its default "
                              f"boxes are assumed to be the builder's ({spec.describe()}); pass anchors= if they are "
                              "not", UserWarning, stacklevel=4)
            return spec
        saved = DefaultBoxSpec.from_dict(self.record["default_boxes"])
        if saved.input_size != spec.input_size:
            raise ValueError(f"input_size={spec.input_size} conflicts with weights {self.name}, trained at input "
                             f"{saved.input_size}")
        if explicit and saved != spec:
            raise ValueError(f"the default boxes asked for ({spec.describe()}) conflict with weights {self.name}, "
                             f"trained with {saved.describe()}; leave anchors/box_sizes/aspect_ratios out")
        return saved

    def normalisation(self, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The ``(mean, std)`` the weights were trained with (RGB, 0..1 scale), else the given ones."""
        source = self.record or (self.weights.meta if self.weights is not None else {})
        return tuple(source.get("mean", mean)), tuple(source.get("std", std))

    def resize(self, resize: str | None, pad_fill: Sequence[float] | None) -> tuple[str, Sequence[float] | None]:
        """``(resize, pad_fill)`` of :class:`~ssd_zoo.transform.SSDTransform`: the caller's, else the record's,
        else ``("stretch", None)`` (all published weights were trained stretched)."""
        record = self.record or {}
        if resize is None:
            resize, pad_fill = record.get("resize") or "stretch", pad_fill if pad_fill is not None else record.get("pad_fill")
        return resize, pad_fill

    @cached_property
    def file_classes(self) -> FileClasses:
        """The names of the weights' own classes and how they are known (:mod:`ssd_zoo.weights.file_classes`:
        given, recorded, a recognised published file, the layout's label space, or None)."""
        source = self.record or (self.weights.meta if self.weights is not None else {})
        recorded = source.get("categories") or self.wrapper_names
        file_name = os.path.basename(urllib.parse.urlparse(self.source).path) if self.weights is None else None
        sha256 = (lambda: files.file_sha256(self.file)) if self.file is not None else None
        return file_classes(self.num_classes, given=self.given_names, recorded=recorded, layout=self.layout,
                            where=self.name, file_name=file_name, sha256=sha256)

    @property
    def categories(self) -> list[str] | None:
        """Class names (background first) of the weights, where known (see :attr:`file_classes`; after
        :meth:`retarget`: the model's)."""
        if self.class_map is not None:
            return list(self.class_map.target_names) if self.class_map.target_names is not None else None
        names = self.file_classes.names
        return list(names) if names is not None else None


# Without weights, a builder makes a VOC detector: 20 classes and background.
DEFAULT_NUM_CLASSES = len(VOC_CATEGORIES)


def builder_config(checkpoint: Checkpoint | None, num_classes: int | None, anchors: str | None,
                   default_anchors: str = "voc") -> tuple[int, str]:
    """``(num_classes, anchors)`` a builder uses: the caller's, else the checkpoint's, else VOC's 21 classes
    and ``default_anchors`` (see :meth:`Checkpoint.config` for conflicts)."""
    if checkpoint is not None:
        return checkpoint.config(num_classes, anchors, default_anchors)
    return num_classes or DEFAULT_NUM_CLASSES, anchors or default_anchors


# Files that are not torch checkpoints but carry a whole model (a TensorFlow frozen graph): file suffix -> the
# function that reads one into a Checkpoint (its record and ``architecture`` name the model it fits). A publisher
# module registers its own (:func:`register_file_reader`), so that this module imports none of them.
_FILE_READERS: dict[str, Callable[[Path], Checkpoint]] = {}


def register_file_reader(suffix: str, reader: Callable[[Path], Checkpoint]) -> None:
    """Read files ending in ``suffix`` (e.g. ``".pb"``) with ``reader`` wherever weights are read; a suffix
    registered twice raises ValueError."""
    if suffix in _FILE_READERS:
        raise ValueError(f"register_file_reader: files ending in {suffix!r} already have a reader")
    _FILE_READERS[suffix] = reader


def read_weights(weights: Resolved, input_order: str | None = None, progress: bool = True) -> Checkpoint:
    """A :class:`Checkpoint` in ssd_zoo's layout from what :func:`resolve_weights` returned.

    Named weights are downloaded on first use (they carry their layout and channel order); a file or URL is
    read now and its layout recognised from its keys; a file with a registered suffix (:func:`register_file_reader`,
    e.g. a TensorFlow ``.pb``) by its reader. ``input_order``: "bgr" for a file trained on BGR images.
    """
    if isinstance(weights, Checkpoint):
        return weights
    suffix = Path(os.fspath(weights)).suffix if isinstance(weights, (Path, str)) else ""
    if suffix in _FILE_READERS:
        if not isinstance(weights, Path):
            raise ValueError(f"{weights}: a {suffix} file is read from disk only; download it and pass its path")
        return _FILE_READERS[suffix](weights)
    if isinstance(weights, WeightsEnum):
        meta = weights.meta

        def download() -> dict[str, Tensor]:
            return convert.to_ssd_zoo(_read_stored(weights, progress), meta["layout"], meta["input_order"], where=weights.url)

        return Checkpoint(download, weights.url, meta["layout"], meta["num_classes"], meta["anchors"], weights)
    source = os.fspath(weights)
    stored = _read_raw(weights, progress)
    checkpoint = checkpoint_from(convert.unwrap(stored), source, input_order)
    return dataclasses.replace(checkpoint, wrapper_names=wrapper_class_names(stored),
                               file=weights if isinstance(weights, Path) else None)


def checkpoint_from(raw: dict[str, Tensor], source: str, input_order: str | None = None,
                    layout: str | None = None) -> Checkpoint:
    """A :class:`Checkpoint` from a state dict in any registered ``layout`` (recognised from its keys if None);
    its class names as :mod:`ssd_zoo.weights.file_classes` finds them."""
    layout = layout or convert.detect_layout(raw, where=source)
    state = convert.to_ssd_zoo(raw, layout, input_order or "rgb", where=source)
    record = split_record(state)[1]
    num_classes = record["num_classes"] if record else convert.head_classes(state)
    return Checkpoint(lambda: state, source, layout, num_classes, convert.LAYOUT_ANCHORS[layout], record=record,
                      architecture=lambda: convert.fitting_model(raw, layout, where=source))


def fetch_weights(weights: Any, model_name: str, pretrained: bool | None = None, progress: bool = True) -> Checkpoint | None:
    """:func:`resolve_weights` then :func:`read_weights`: what a builder calls before it builds (None: no weights)."""
    resolved = resolve_weights(weights, model_name, pretrained)
    return None if resolved is None else read_weights(resolved, progress=progress)


def retarget_weights(weights: Any, model_name: str, num_classes: int | None,
                     class_names: Sequence[str] | None = None, *, weights_class_names: Sequence[str] | None = None,
                     fresh_rows: bool = False) -> Any:
    """``weights`` (anything :func:`resolve_weights` accepts) for a model of ``num_classes`` named
    ``class_names`` (background first): read and :meth:`Checkpoint.retarget`-ed where a class count or names
    are given, else ``weights`` unchanged (what :func:`ssd_zoo.build` passes on to the builder).

    ``weights_class_names``: the names of the file's own labels ``1..K`` in its order, overriding what the file
    records or implies (:mod:`ssd_zoo.weights.file_classes`). ``fresh_rows``: the caller asked for
    ``num_classes`` itself, so weights that name no classes may start every class row afresh."""
    if weights is None or (num_classes is None and weights_class_names is None):
        return weights
    checkpoint = fetch_weights(weights, model_name)
    if weights_class_names is not None:
        if checkpoint.class_map is not None:
            checkpoint = dataclasses.replace(checkpoint, num_classes=checkpoint.class_map.source_classes, class_map=None)
        names = given_names(weights_class_names, checkpoint.num_classes, checkpoint.name)
        checkpoint = dataclasses.replace(checkpoint, given_names=names)
    return checkpoint if num_classes is None else checkpoint.retarget(num_classes, class_names, fresh_rows=fresh_rows)


def load_state_dict(module: nn.Module, state_dict: dict[str, Tensor], source: str = "state dict", *,
                    partial: bool = False) -> nn.Module:
    """``module.load_state_dict(state_dict)`` with one error listing missing, unexpected and mis-shaped keys.

    ``partial=True`` fills only the keys ``state_dict`` has (e.g. a backbone's ImageNet convs); its other
    keys must still be the module's, with the module's shapes.
    """
    own = module.state_dict()
    # A state dict without ssd_zoo's model record (another layout's, converted) loads as the model's own.
    missing = [] if partial else sorted(set(own) - set(state_dict) - {RECORD_STATE_KEY})
    unexpected = sorted(set(state_dict) - set(own))
    shapes = {k: (tuple(own[k].shape), tuple(v.shape)) for k, v in state_dict.items()
              if k in own and k != RECORD_STATE_KEY and own[k].shape != v.shape}  # the model checks its record
    if missing or unexpected or shapes:
        raise ValueError(f"{source} does not fit {type(module).__name__}: missing keys {missing}, unexpected keys "
                         f"{unexpected}, mis-shaped keys (expected, found) {shapes}")
    module.load_state_dict(state_dict, strict=not partial)
    return module


def load_weights(model: nn.Module, weights: Any, model_name: str, progress: bool = True) -> nn.Module:
    """Load ``weights`` (anything :func:`resolve_weights` accepts for ``model_name``) into a built ``model``.

    For a model whose ``num_classes`` is settled; to let the weights decide it, build with ``weights=`` instead.
    """
    checkpoint = fetch_weights(weights, model_name, progress=progress)
    if checkpoint is not None:
        checkpoint.config(getattr(model, "num_classes", None), None)  # raises on a num_classes conflict
        checkpoint.load_into(model)
    return model


def load_vgg16_backbone(backbone: nn.Module, weights: WeightsEnum | str | os.PathLike = "DEFAULT",
                        input_order: str = "rgb", progress: bool = True) -> nn.Module:
    """Initialise a :class:`~ssd_zoo.models.vgg.VGG16Backbone` from an ImageNet VGG16 file.

    ``weights``: a :class:`VGG16_Backbone_Weights` member or name, a URL, or a path to either layout:
    ssd.pytorch's ``vgg16_reducedfc.pth`` (keys ``N.*`` or ``vgg.N.*``; fills conv1_1 ... conv5_3, fc6, fc7)
    or torchvision's ``vgg16_features-*.pth`` (``features.N.*``; fills conv1_1 ... conv5_3; ``classifier.*``
    is ignored). L2Norm and the extra layers keep their initialisation. ``input_order="bgr"`` for BGR weights.
    """
    resolved = resolve_weights(weights, "vgg16_backbone")
    where = resolved.url if isinstance(resolved, WeightsEnum) else os.fspath(resolved)
    state = convert.vgg16_backbone_from(_read_stored(resolved, progress), where, input_order)
    return load_state_dict(backbone, state, where, partial=True)


def default_categories(num_classes: int) -> list[str]:
    """Labels for a model whose classes nothing names (:func:`ssd_zoo.load` of such a file): VOC's for 21
    classes, COCO's for 91 (torchvision's ids, "N/A" for the unused ones) and 81 (the 80 classes in order),
    else ``"class N"``; index 0 is background."""
    for names in (VOC_CATEGORIES, COCO_CATEGORIES, COCO80_CATEGORIES):
        if num_classes == len(names):
            return list(names)
    return [COCO_CATEGORIES[0]] + [f"class {i}" for i in range(1, num_classes)]
