"""Published SSD weights, loadable by name, and local checkpoints in any supported layout.

Metadata sits on torchvision's public multi-weight API: one ``WeightsEnum`` per model, each member a
``Weights(url, transforms, meta)``. ``meta`` keys (all entries have them):

- ``model``: the registered model name the weights fit; ``input_size``: the network input side, pixels;
- ``file_name``: the name in torch.hub's cache; ``sha256``: the sha256 prefix that name carries after its
  last ``-`` (torch.hub's ``check_hash`` convention), or None where the publisher gave none;
- ``layout``: the key layout of the published file (see :mod:`ssd_zoo.convert`), converted on load;
  ``input_order``: the channel order the network was trained on ("rgb" or "bgr");
- ``num_classes`` (with background), ``categories`` (``num_classes`` names, index 0 background, or None),
  ``anchors``: the default-box preset ("voc" or "coco");
- ``mean``, ``std``: normalisation of RGB in [0, 1]; ``dataset``: what it was trained on;
- ``metrics``: ``{benchmark: {metric: value}}`` as published, ``metrics_source``: where; ``recipe``: how.

What a user passes as ``weights=`` is resolved by one function (:func:`resolve_weights`: an enum member, a
``"NAME"`` / ``"model.NAME"`` string, a path or a URL), read by one (:func:`read_weights`: downloads and files
through :mod:`ssd_zoo.hub`, any layout converted by :mod:`ssd_zoo.convert`) and loaded by one, with one
key/shape check (:func:`load_state_dict`).
"""
from __future__ import annotations

import fnmatch
import os
import warnings
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torchvision.models import Weights, WeightsEnum
from torchvision.models.detection import SSD300_VGG16_Weights as _TorchvisionSSD300Weights

from . import convert, hub
from .hub import read_file  # noqa: F401  (part of this module's API since 0.1)
from .transform import CAFFE_MEAN, CAFFE_STD, SSDTransform

VOC_CATEGORIES = [
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
# torchvision's 91 COCO ids (80 classes, "N/A" for the ids COCO left unused), read from its public weights.
COCO_CATEGORIES = list(_TorchvisionSSD300Weights.COCO_V1.meta["categories"])


def ssd_weights(url: str, *, model: str, input_size: int, layout: str, num_classes: int, anchors: str,
                categories: list[str] | None, dataset: str, metrics: dict[str, dict[str, float]],
                metrics_source: str, recipe: str, file_name: str | None = None, sha256: str | None = None,
                input_order: str = "rgb", **extra: Any) -> Weights:
    """One ``Weights`` entry with every ``meta`` key of the module docstring; ``file_name`` defaults to the
    URL's last part. Use it for your own enums, e.g. a fine-tuned model served from your file server."""
    meta = dict(model=model, input_size=input_size, file_name=file_name or url.rsplit("/", 1)[-1], sha256=sha256,
                layout=layout, input_order=input_order, num_classes=num_classes, categories=categories,
                anchors=anchors, mean=CAFFE_MEAN, std=CAFFE_STD, dataset=dataset, metrics=metrics,
                metrics_source=metrics_source, recipe=recipe, **extra)
    return Weights(url=url, transforms=partial(SSDTransform, input_size), meta=meta)


class SSD300_VGG16_Weights(WeightsEnum):
    """Published SSD300-VGG16 detectors (``ssd_zoo.build("ssd300_vgg16", weights="VOC0712")``)."""

    COCO_V1 = ssd_weights(
        "https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth", sha256="b556d3b4",
        model="ssd300_vgg16", input_size=300, layout="torchvision", num_classes=91, anchors="coco",
        categories=COCO_CATEGORIES, dataset="COCO train2017", metrics={"COCO-val2017": {"box_map": 25.1}},
        metrics_source="https://pytorch.org/vision/stable/models/generated/torchvision.models.detection.ssd300_vgg16.html",
        recipe="https://github.com/pytorch/vision/tree/main/references/detection#ssd300-vgg16", num_params=35641826,
    )
    VOC0712 = ssd_weights(
        "https://s3.amazonaws.com/amdegroot-models/ssd300_mAP_77.43_v2.pth",
        model="ssd300_vgg16", input_size=300, layout="ssd.pytorch", num_classes=21, anchors="voc",
        categories=VOC_CATEGORIES, dataset="VOC2007 trainval + VOC2012 trainval",
        metrics={"VOC2007-test": {"mAP": 77.43}}, metrics_source="https://github.com/amdegroot/ssd.pytorch#performance",
        recipe="https://github.com/amdegroot/ssd.pytorch#training-ssd", num_params=26285486,
    )
    # The builder's own defaults are VOC's (21 classes, anchors="voc"): DEFAULT keeps that architecture.
    DEFAULT = VOC0712


class VGG16_Backbone_Weights(WeightsEnum):
    """ImageNet VGG16 files that SSD training starts from (``weights="vgg16_backbone.DEFAULT"``); load them
    with :func:`load_vgg16_backbone`.

    ``meta["layout"]``: "ssd.pytorch-vgg" (conv1_1 ... conv5_3, fc6, fc7) or "torchvision-vgg16"
    (conv1_1 ... conv5_3 only; fc6 and fc7 keep their initialisation, as in torchvision's SSD300).
    """

    IMAGENET1K_REDUCEDFC = Weights(
        url="https://s3.amazonaws.com/amdegroot-models/vgg16_reducedfc.pth", transforms=partial(SSDTransform, 300),
        meta={"file_name": "vgg16_reducedfc.pth", "sha256": None, "layout": "ssd.pytorch-vgg", "input_order": "rgb",
              "dataset": "ImageNet-1K", "recipe": "https://github.com/amdegroot/ssd.pytorch#training-ssd"},
    )
    IMAGENET1K_FEATURES = Weights(
        url="https://download.pytorch.org/models/vgg16_features-amdegroot-88682ab5.pth",
        transforms=partial(SSDTransform, 300),
        meta={"file_name": "vgg16_features-amdegroot-88682ab5.pth", "sha256": "88682ab5", "layout": "torchvision-vgg16",
              "input_order": "rgb", "dataset": "ImageNet-1K",
              "recipe": "https://pytorch.org/vision/stable/models/generated/torchvision.models.vgg16.html"},
    )
    DEFAULT = IMAGENET1K_REDUCEDFC


# model name -> its weights enum (the VGG16 backbone files under "vgg16_backbone").
_WEIGHTS: dict[str, type[WeightsEnum]] = {"ssd300_vgg16": SSD300_VGG16_Weights, "vgg16_backbone": VGG16_Backbone_Weights}
Resolved = WeightsEnum | Path | str  # a published entry, a local file, or a URL (str)


def get_model_weights(model_name: str) -> type[WeightsEnum]:
    """The weights enum of ``model_name``; ValueError naming the models that have weights."""
    if model_name not in _WEIGHTS:
        raise ValueError(f"no published weights for {model_name!r}; models with weights: {sorted(_WEIGHTS)}")
    return _WEIGHTS[model_name]


def _lookup(name: str, model_name: str | None = None) -> WeightsEnum | None:
    """The member that ``name`` means: ``"MEMBER"`` (with ``model_name``), ``"<model>.MEMBER"`` or
    ``"<Enum class>.MEMBER"`` (members include aliases such as DEFAULT); None if it means none."""
    owner, _, member = name.rpartition(".")
    if not owner and model_name is not None:
        owner = model_name
    enum = _WEIGHTS.get(owner) or next((e for e in _WEIGHTS.values() if e.__name__ == owner), None)
    if enum is None or member not in enum.__members__:
        return None
    if model_name is not None and enum is not _WEIGHTS.get(model_name):
        return None
    return enum[member]


def get_weights(name: str) -> WeightsEnum:
    """``"ssd300_vgg16.VOC0712"`` or ``"SSD300_VGG16_Weights.VOC0712"`` (or ``.DEFAULT``) -> the member."""
    weights = _lookup(name)
    if weights is None:
        raise ValueError(f"unknown weights {name!r}; expected one of {list_weights()} (or <model>.DEFAULT)")
    return weights


def list_weights(model_name: str | None = None) -> list[str]:
    """``"<model>.<MEMBER>"`` names of all weights (aliases like DEFAULT left out); ``model_name`` may be an
    fnmatch pattern."""
    return [f"{model}.{member.name}" for model, enum in sorted(_WEIGHTS.items())
            if fnmatch.fnmatch(model, model_name or "*") for member in enum]


def _weights_name(weights: WeightsEnum) -> str:
    return f"{type(weights).__name__}.{weights.name}"


def resolve_weights(weights: Any, model_name: str, pretrained: bool | None = None) -> Resolved | None:
    """What ``weights=`` means for the model ``model_name``: None, a member of its enum, a local file or a URL.

    Accepts None, ``"DEFAULT"``, a member name (``"VOC0712"``, ``"SSD300_VGG16_Weights.VOC0712"``,
    ``"ssd300_vgg16.VOC0712"``), a ``WeightsEnum`` member whose ``meta["model"]`` is ``model_name``, a path
    (str or ``os.PathLike``), or an ``http(s)://`` / ``file://`` URL (returned as the string).
    ``pretrained=True`` (deprecated, as in torchvision) means ``"DEFAULT"``.
    """
    if pretrained is not None:
        warnings.warn("'pretrained' is deprecated; use weights='DEFAULT' (or weights=None)", FutureWarning, stacklevel=3)
        if pretrained and weights is not None:
            raise ValueError(f"pass either weights={weights!r} or pretrained=True, not both")
        weights = "DEFAULT" if pretrained else weights
    if weights is None or isinstance(weights, Path):
        return weights
    if isinstance(weights, WeightsEnum):
        if weights.meta.get("model", model_name) != model_name:
            raise ValueError(f"weights {_weights_name(weights)} are for {weights.meta['model']!r}, not {model_name!r}")
        return weights
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights: expected None, a name, a WeightsEnum member, a path or a URL, "
                        f"found {type(weights).__name__}")
    name = os.fspath(weights)
    if hub.is_url(name):
        return name
    member = _lookup(name, model_name)
    if member is not None:
        return member
    if os.path.isfile(name):
        return Path(name)
    enum = _WEIGHTS.get(model_name)
    known = f"one of {list(enum.__members__)}" if enum else f"no published weights for {model_name} (see list_weights())"
    raise ValueError(f"weights={name!r} for {model_name}: expected a weights name ({known}), a URL or a checkpoint "
                     f"file, but no file exists at {name!r}")


def download_state_dict(weights: WeightsEnum, progress: bool = True) -> dict[str, Any]:
    """The published file of ``weights``, as stored (its own layout), from torch.hub's cache or its URL
    (see :func:`ssd_zoo.hub.download`; the sha256 prefix in ``meta["sha256"]`` is checked)."""
    meta = weights.meta
    return hub.download(weights.url, file_name=meta["file_name"], sha256=meta["sha256"], progress=progress,
                        what=_weights_name(weights))


def _read_stored(weights: Resolved, progress: bool) -> dict[str, Any]:
    """The file that resolved ``weights`` point at, as stored, its training-state wrapper removed."""
    if isinstance(weights, WeightsEnum):
        raw = download_state_dict(weights, progress)
    elif isinstance(weights, Path):
        raw = hub.read_file(weights)
    else:
        raw = hub.download(weights, progress=progress)
    return convert.unwrap(raw)


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
    """

    read: Callable[[], dict[str, Tensor]]
    source: str
    layout: str
    num_classes: int | None
    anchors: str | None
    weights: WeightsEnum | None = None

    @cached_property
    def state_dict(self) -> dict[str, Tensor]:
        return self.read()

    @property
    def name(self) -> str:
        return _weights_name(self.weights) if self.weights is not None else self.source

    def load_into(self, model: nn.Module) -> nn.Module:
        """Copy the tensors into ``model`` (every key and shape must match) and return it."""
        return load_state_dict(model, self.state_dict, self.source)

    def config(self, num_classes: int | None, anchors: str | None, default_anchors: str = "voc") -> tuple[int, str]:
        """``(num_classes, anchors)`` for the builder: the caller's, else the checkpoint's. A caller's value
        that contradicts named weights raises ValueError (for a local file, an explicit ``anchors`` wins)."""
        if num_classes is not None and self.num_classes is not None and num_classes != self.num_classes:
            raise ValueError(f"num_classes={num_classes} conflicts with weights {self.name}, trained for "
                             f"{self.num_classes} classes (with background); leave num_classes out, or build without weights")
        if self.weights is not None and anchors is not None and anchors != self.anchors:
            raise ValueError(f"anchors={anchors!r} conflicts with weights {self.name}, trained with anchors={self.anchors!r}")
        return (num_classes or self.num_classes or DEFAULT_NUM_CLASSES), (anchors or self.anchors or default_anchors)


# Without weights, a builder makes a VOC detector: 20 classes and background.
DEFAULT_NUM_CLASSES = len(VOC_CATEGORIES)


def builder_config(checkpoint: Checkpoint | None, num_classes: int | None, anchors: str | None,
                   default_anchors: str = "voc") -> tuple[int, str]:
    """``(num_classes, anchors)`` a builder uses: the caller's, else the checkpoint's, else VOC's 21 classes
    and ``default_anchors`` (see :meth:`Checkpoint.config` for conflicts)."""
    if checkpoint is not None:
        return checkpoint.config(num_classes, anchors, default_anchors)
    return num_classes or DEFAULT_NUM_CLASSES, anchors or default_anchors


def read_weights(weights: Resolved, input_order: str | None = None, progress: bool = True) -> Checkpoint:
    """A :class:`Checkpoint` in ssd_zoo's layout from what :func:`resolve_weights` returned.

    Named weights are downloaded on first use (they carry their layout and channel order); a file or URL is
    read now and its layout recognised from its keys. ``input_order``: "bgr" for a file trained on BGR images.
    """
    if isinstance(weights, WeightsEnum):
        meta = weights.meta

        def download() -> dict[str, Tensor]:
            return convert.to_ssd_zoo(_read_stored(weights, progress), meta["layout"], meta["input_order"], where=weights.url)

        return Checkpoint(download, weights.url, meta["layout"], meta["num_classes"], meta["anchors"], weights)
    source = os.fspath(weights)
    raw = _read_stored(weights, progress)
    layout = convert.detect_layout(raw, where=source)
    state = convert.to_ssd_zoo(raw, layout, input_order or "rgb", where=source)
    return Checkpoint(lambda: state, source, layout, convert.head_classes(state), convert.LAYOUT_ANCHORS[layout])


def fetch_weights(weights: Any, model_name: str, pretrained: bool | None = None, progress: bool = True) -> Checkpoint | None:
    """:func:`resolve_weights` then :func:`read_weights`: what a builder calls before it builds (None: no weights)."""
    resolved = resolve_weights(weights, model_name, pretrained)
    return None if resolved is None else read_weights(resolved, progress=progress)


def load_state_dict(module: nn.Module, state_dict: dict[str, Tensor], source: str = "state dict", *,
                    partial: bool = False) -> nn.Module:
    """``module.load_state_dict(state_dict)`` with one error listing missing, unexpected and mis-shaped keys.

    ``partial=True`` fills only the keys ``state_dict`` has (e.g. a backbone's ImageNet convs); its other
    keys must still be the module's, with the module's shapes.
    """
    own = module.state_dict()
    missing = [] if partial else sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = {k: (tuple(own[k].shape), tuple(v.shape)) for k, v in state_dict.items() if k in own and own[k].shape != v.shape}
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
