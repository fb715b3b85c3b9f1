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

Downloads go through ``torch.hub.load_state_dict_from_url`` into ``$TORCH_HOME/hub/checkpoints``, always
with ``weights_only=True``.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import urllib.error
import warnings
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from torch import Tensor, nn
from torchvision.models import Weights, WeightsEnum
from torchvision.models.detection import SSD300_VGG16_Weights as _TorchvisionSSD300Weights

from . import convert
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
    """ImageNet VGG16 files that SSD training starts from; load them with :func:`load_vgg16_backbone`.

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


# model name -> its weights enum. Other modules add theirs with @register_weights("model_name").
_WEIGHTS: dict[str, type[WeightsEnum]] = {"ssd300_vgg16": SSD300_VGG16_Weights, "vgg16_backbone": VGG16_Backbone_Weights}
E = TypeVar("E", bound=type[WeightsEnum])


def register_weights(model_name: str) -> Callable[[E], E]:
    """Class decorator: ``enum`` holds the weights of ``model_name``; registering a name twice raises."""
    def register(enum: E) -> E:
        if model_name in _WEIGHTS:
            raise ValueError(f"register_weights: {model_name!r} already has weights {_WEIGHTS[model_name].__name__}")
        _WEIGHTS[model_name] = enum
        return enum
    return register


def get_model_weights(model_name: str) -> type[WeightsEnum]:
    """The weights enum of ``model_name``; ValueError naming the models that have weights."""
    if model_name not in _WEIGHTS:
        raise ValueError(f"no published weights for {model_name!r}; models with weights: {sorted(_WEIGHTS)}")
    return _WEIGHTS[model_name]


def get_weights(name: str) -> WeightsEnum:
    """``"ssd300_vgg16.VOC0712"`` or ``"SSD300_VGG16_Weights.VOC0712"`` (or ``.DEFAULT``) -> the member."""
    owner, _, member = name.rpartition(".")
    enums = {e.__name__: e for e in _WEIGHTS.values()} | _WEIGHTS
    if owner not in enums or member not in enums[owner].__members__:
        raise ValueError(f"unknown weights {name!r}; expected one of {list_weights()} (or <model>.DEFAULT)")
    return enums[owner][member]


def list_weights(model_name: str | None = None) -> list[str]:
    """``"<model>.<MEMBER>"`` names of all weights (aliases like DEFAULT left out); ``model_name`` may be an
    fnmatch pattern."""
    return [f"{model}.{member.name}" for model, enum in sorted(_WEIGHTS.items())
            if fnmatch.fnmatch(model, model_name or "*") for member in enum]


def _weights_name(weights: WeightsEnum) -> str:
    return f"{type(weights).__name__}.{weights.name}"


def download_state_dict(weights: WeightsEnum, progress: bool = True) -> dict[str, Any]:
    """The published file of ``weights``, as stored (its own layout), from torch.hub's cache or its URL.

    The sha256 prefix in ``meta["sha256"]`` is checked on download and on every load from the cache. Raises
    RuntimeError naming the URL, the cache path and how to pass the file by path when offline, or when the
    file's hash does not match.
    """
    meta, name = weights.meta, _weights_name(weights)
    cache = Path(torch.hub.get_dir()) / "checkpoints" / meta["file_name"]
    fix = f"download {weights.url} yourself and pass weights='/path/to/{meta['file_name']}', or put it at {cache}"
    if cache.is_file() and meta["sha256"] and not _sha256(cache).startswith(meta["sha256"]):
        raise RuntimeError(f"{name}: cached file {cache} does not match sha256 prefix {meta['sha256']}; delete it to re-download")
    try:
        return torch.hub.load_state_dict_from_url(
            weights.url, map_location="cpu", progress=progress, check_hash=meta["sha256"] is not None,
            file_name=meta["file_name"], weights_only=True,
        )
    except urllib.error.URLError as error:  # also HTTPError; offline is a URLError too
        raise RuntimeError(f"{name}: could not download {weights.url} into {cache} ({error}); {fix}") from error
    except RuntimeError as error:
        if "invalid hash value" not in str(error):
            raise
        raise RuntimeError(
            f"{name}: the file at {weights.url} does not match the sha256 prefix {meta['sha256']!r} in its name "
            f"({error}); it was not kept in {cache}"
        ) from error


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_file(path: str | os.PathLike) -> dict[str, Any]:
    """A local checkpoint, loaded with ``weights_only=True``; the error names the path."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"weights: expected a checkpoint file at {os.fspath(path)!r}, found nothing there") from None
    except Exception as error:  # unpickling refused or a corrupt file: say which file
        raise RuntimeError(f"could not read checkpoint {os.fspath(path)!r} with weights_only=True: {error}") from error


@dataclass
class Checkpoint:
    """Weights ready to load into an ssd_zoo model; named weights are downloaded only when first needed.

    Attributes:
        read: returns the state dict (parameter name -> tensor) in ssd_zoo's layout.
        source: the URL or path it comes from (for error messages).
        layout: the layout it is stored in ("ssd_zoo", "torchvision" or "ssd.pytorch").
        num_classes: classes with background (None where the head was not recognised).
        anchors: the default-box preset it was trained with, where known ("voc", "coco" or None).
        weights: the named entry it comes from, None for a local file.
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

    def load_into(self, model: nn.Module) -> nn.Module:
        """Copy the tensors into ``model`` (every key and shape must match) and return it."""
        return load_state_dict(model, self.state_dict, self.source)

    def config(self, num_classes: int | None, anchors: str | None, default_anchors: str = "voc") -> tuple[int, str]:
        """``(num_classes, anchors)`` for the builder: the caller's, else the checkpoint's. A caller's value
        that contradicts named weights raises ValueError (for a local file, an explicit ``anchors`` wins)."""
        what = _weights_name(self.weights) if self.weights is not None else self.source
        if num_classes is not None and self.num_classes is not None and num_classes != self.num_classes:
            raise ValueError(f"num_classes={num_classes} conflicts with weights {what}, trained for {self.num_classes} "
                             "classes (with background); leave num_classes out, or build without weights")
        if self.weights is not None and anchors is not None and anchors != self.anchors:
            raise ValueError(f"anchors={anchors!r} conflicts with weights {what}, trained with anchors={self.anchors!r}")
        return (num_classes or self.num_classes or 21), (anchors or self.anchors or default_anchors)


def _head_classes(state_dict: dict[str, Tensor]) -> int | None:
    """Classes with background, from level 0's head convs: ``[k*C, ...]`` and ``[k*4, ...]``."""
    cls, reg = state_dict.get("head.classification.0.weight"), state_dict.get("head.regression.0.weight")
    return None if cls is None or reg is None else cls.shape[0] // (reg.shape[0] // 4)


# What a layout implies about default boxes: torchvision's SSD300 uses its own (= "coco") scales.
_LAYOUT_ANCHORS = {"torchvision": "coco", "ssd.pytorch": "voc", "ssd_zoo": None}


def read_weights(weights: WeightsEnum | str | os.PathLike, input_order: str | None = None,
                 progress: bool = True) -> Checkpoint:
    """A checkpoint in ssd_zoo's layout: named weights are downloaded on first use, a path is read now.

    ``input_order`` (for files; named weights carry theirs): "bgr" for a network trained on BGR images.
    """
    if isinstance(weights, WeightsEnum):
        meta = weights.meta

        def download() -> dict[str, Tensor]:
            raw = convert.unwrap(download_state_dict(weights, progress))
            return convert.to_ssd_zoo(raw, meta["layout"], meta["input_order"], where=weights.url)

        return Checkpoint(download, weights.url, meta["layout"], meta["num_classes"], meta["anchors"], weights)
    source = os.fspath(weights)
    raw = convert.unwrap(read_file(source))
    layout = convert.detect_layout(raw, where=source)
    state = convert.to_ssd_zoo(raw, layout, input_order or "rgb", where=source)
    return Checkpoint(lambda: state, source, layout, _head_classes(state), _LAYOUT_ANCHORS[layout])


def resolve_weights(weights: Any, model_name: str, pretrained: bool | None = None) -> WeightsEnum | Path | None:
    """What a builder's ``weights=`` means: None, a member of the model's enum, or a local file.

    Accepts None, ``"DEFAULT"``, a member name (``"VOC0712"``, ``"SSD300_VGG16_Weights.VOC0712"``,
    ``"ssd300_vgg16.VOC0712"``), a ``WeightsEnum`` member whose ``meta["model"]`` is ``model_name``, or a path.
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
        raise TypeError(f"weights: expected None, a name, a WeightsEnum member or a path, found {type(weights).__name__}")
    name = os.fspath(weights)
    enum = _WEIGHTS.get(model_name)
    member = name.rpartition(".")[2]
    if enum is not None and member in enum.__members__ and name.rpartition(".")[0] in ("", model_name, enum.__name__):
        return enum[member]
    if os.path.isfile(name):
        return Path(name)
    known = f"one of {list(enum.__members__)}" if enum else f"no published weights for {model_name} (see list_weights())"
    raise ValueError(f"weights={name!r} for {model_name}: expected a weights name ({known}) or a checkpoint file, "
                     f"but no file exists at {name!r}")


def fetch_weights(weights: Any, model_name: str, pretrained: bool | None = None, progress: bool = True) -> Checkpoint | None:
    """:func:`resolve_weights` then :func:`read_weights`: what a builder calls before it builds (None: no weights)."""
    resolved = resolve_weights(weights, model_name, pretrained)
    return None if resolved is None else read_weights(resolved, progress=progress)


def load_state_dict(model: nn.Module, state_dict: dict[str, Tensor], source: str = "state dict") -> nn.Module:
    """``model.load_state_dict(state_dict)`` with one error listing missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
    shapes = {k: (tuple(own[k].shape), tuple(v.shape)) for k, v in state_dict.items() if k in own and own[k].shape != v.shape}
    if missing or unexpected or shapes:
        raise ValueError(f"{source} does not fit {type(model).__name__}: missing keys {missing}, unexpected keys "
                         f"{unexpected}, mis-shaped keys (expected, found) {shapes}")
    model.load_state_dict(state_dict)
    return model


def load_weights(model: nn.Module, weights: Any, model_name: str, progress: bool = True) -> nn.Module:
    """Load ``weights`` (anything :func:`resolve_weights` accepts) into an already built ``model``.

    For builders that settle ``num_classes`` themselves; to let the weights decide ``num_classes``, call
    :func:`fetch_weights` before building and :meth:`Checkpoint.config` / :meth:`Checkpoint.load_into`.
    """
    checkpoint = fetch_weights(weights, model_name, progress=progress)
    if checkpoint is not None:
        checkpoint.config(getattr(model, "num_classes", None), None)  # raises on a num_classes conflict
        checkpoint.load_into(model)
    return model


def load_vgg16_backbone(backbone: nn.Module, weights: WeightsEnum | str | os.PathLike = "DEFAULT",
                        input_order: str = "rgb", progress: bool = True) -> nn.Module:
    """Initialise a :class:`~ssd_zoo.models.vgg.VGG16Backbone` from an ImageNet VGG16 file.

    ``weights``: a :class:`VGG16_Backbone_Weights` member or name, or a path to either layout: ssd.pytorch's
    ``vgg16_reducedfc.pth`` (keys ``N.*`` or ``vgg.N.*``; fills conv1_1 ... conv5_3, fc6, fc7) or
    torchvision's ``vgg16_features-*.pth`` (``features.N.*``; fills conv1_1 ... conv5_3; ``classifier.*`` is
    ignored). L2Norm and the extra layers keep their initialisation. ``input_order="bgr"`` for BGR weights.
    """
    looks_like_a_path = isinstance(weights, str) and (os.sep in weights or weights.endswith((".pth", ".pt")))
    if isinstance(weights, str) and not looks_like_a_path and not os.path.isfile(weights):
        weights = get_weights(weights if "." in weights else f"vgg16_backbone.{weights}")
    raw = convert.unwrap(download_state_dict(weights, progress) if isinstance(weights, WeightsEnum) else read_file(weights))
    where = weights.url if isinstance(weights, WeightsEnum) else os.fspath(weights)
    state = convert.vgg16_backbone_from(raw, where, input_order)
    own = backbone.state_dict()
    shapes = {k: (tuple(own[k].shape), tuple(v.shape)) for k, v in state.items() if k in own and own[k].shape != v.shape}
    if shapes or not set(state) <= set(own):
        raise ValueError(f"{where} does not fit {type(backbone).__name__}: mis-shaped keys (expected, found) {shapes}, "
                         f"unknown keys {sorted(set(state) - set(own))}")
    backbone.load_state_dict(state, strict=False)
    return backbone
