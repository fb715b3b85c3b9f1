"""The published SSD weights: one ``WeightsEnum`` per model, and their names.

Metadata sits on torchvision's public multi-weight API: each member is a ``Weights(url, transforms, meta)``.
``meta`` keys (all entries have them):

- ``model``: the registered model name the weights fit; ``input_size``: the network input side, pixels;
- ``file_name``: the name in torch.hub's cache; ``sha256``: the sha256 prefix that name carries after its
  last ``-`` (torch.hub's ``check_hash`` convention), or None where the publisher gave none;
- ``layout``: the key layout of the published file (see :mod:`ssd_zoo.weights.convert`), converted on load;
  ``input_order``: the channel order the network was trained on ("rgb" or "bgr");
- ``num_classes`` (with background), ``categories`` (``num_classes`` names, index 0 background, or None),
  ``anchors``: the default-box preset ("voc" or "coco"), or None for a model with its publisher's own boxes;
- ``mean``, ``std``: normalisation of RGB in [0, 1]; ``dataset``: what it was trained on;
- ``metrics``: ``{benchmark: {metric: value}}`` as published, ``metrics_source``: where; ``recipe``: how;
- ``source_commit``: the publisher's commit whose config and code the entry follows (``owner/repo@sha (files)``;
  where a config changed over the file's life, the version that trained it), or None for your own entries.

Loading them (and files and URLs) is :mod:`ssd_zoo.weights`' business.
"""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from functools import partial
from typing import Any

from torchvision.models import Weights, WeightsEnum
from torchvision.models.detection import SSD300_VGG16_Weights as _TorchvisionSSD300Weights

from ssd_zoo.files import hash_prefix
from ssd_zoo.weights import convert
from ssd_zoo.transform import CAFFE_MEAN, CAFFE_STD, SSDTransform

VOC_CATEGORIES = [
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
# torchvision's 91 COCO ids (80 classes, "N/A" for the ids COCO left unused), read from its public weights.
COCO_CATEGORIES = list(_TorchvisionSSD300Weights.COCO_V1.meta["categories"])
# COCO's 80 classes in category-id order (the contiguous labels of ssd.pytorch, lufficc and NVIDIA), background first.
COCO80_CATEGORIES = [name for name in COCO_CATEGORIES if name != "N/A"]
# The label spaces a publisher's layout implies for a class count (see ``Layout.label_spaces`` in
# :mod:`ssd_zoo.weights.convert`): name -> class names, background first.
LABEL_SPACES: dict[str, list[str]] = {convert.VOC: VOC_CATEGORIES, convert.COCO_91: COCO_CATEGORIES,
                                      convert.COCO_80: COCO80_CATEGORIES}


def ssd_weights(url: str, *, model: str, input_size: int, layout: str, num_classes: int, anchors: str,
                categories: list[str] | None, dataset: str, metrics: dict[str, dict[str, float]],
                metrics_source: str, recipe: str, file_name: str | None = None, sha256: str | None = None,
                source_commit: str | None = None,
                input_order: str = "rgb", mean: tuple[float, ...] = CAFFE_MEAN, std: tuple[float, ...] = CAFFE_STD,
                **extra: Any) -> Weights:
    """One ``Weights`` entry with every ``meta`` key of the module docstring; ``file_name`` defaults to the
    URL's last part. Use it for your own enums, e.g. a fine-tuned model served from your file server."""
    meta = dict(model=model, input_size=input_size, file_name=file_name or url.rsplit("/", 1)[-1], sha256=sha256,
                layout=layout, input_order=input_order, num_classes=num_classes, categories=categories,
                anchors=anchors, mean=mean, std=std, dataset=dataset, metrics=metrics,
                metrics_source=metrics_source, recipe=recipe, source_commit=source_commit, **extra)
    return Weights(url=url, transforms=partial(SSDTransform, input_size), meta=meta)


class SSD300_VGG16_Weights(WeightsEnum):
    """Published SSD300-VGG16 detectors (``ssd_zoo.build("ssd300_vgg16", weights="VOC0712")``)."""

    COCO_V1 = ssd_weights(
        "https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth", sha256="b556d3b4",
        model="ssd300_vgg16", input_size=300, layout="torchvision", num_classes=91, anchors="coco",
        categories=COCO_CATEGORIES, dataset="COCO train2017", metrics={"COCO-val2017": {"box_map": 25.1}},
        metrics_source="https://pytorch.org/vision/stable/models/generated/torchvision.models.detection.ssd300_vgg16.html",
        recipe="https://github.com/pytorch/vision/tree/main/references/detection#ssd300-vgg16", num_params=35641826,
        source_commit="pytorch/vision@16daea1cedf75c367da12816d875f3811aeda602 (torchvision/models/detection/ssd.py)",
    )
    VOC0712 = ssd_weights(
        "https://s3.amazonaws.com/amdegroot-models/ssd300_mAP_77.43_v2.pth",
        model="ssd300_vgg16", input_size=300, layout="ssd.pytorch", num_classes=21, anchors="voc",
        categories=VOC_CATEGORIES, dataset="VOC2007 trainval + VOC2012 trainval",
        metrics={"VOC2007-test": {"mAP": 77.43}}, metrics_source="https://github.com/amdegroot/ssd.pytorch#performance",
        recipe="https://github.com/amdegroot/ssd.pytorch#training-ssd", num_params=26285486,
        source_commit="amdegroot/ssd.pytorch@b72f288597ca35674e957ffcf896bd80e748bbc1 (data/config.py voc, ssd.py)",
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


def register_weights(model_name: str, enum: type[WeightsEnum]) -> type[WeightsEnum]:
    """Make ``enum`` the published weights of the registered model ``model_name`` (a publisher module calls
    this); every member's ``meta["model"]`` must be ``model_name``, and a model registered twice raises."""
    if model_name in _WEIGHTS:
        raise ValueError(f"register_weights: {model_name!r} already has weights {_WEIGHTS[model_name].__name__}")
    wrong = [m.name for m in enum if m.meta.get("model") != model_name]
    if wrong:
        raise ValueError(f"register_weights: {enum.__name__} members {wrong} are not for {model_name!r}")
    _WEIGHTS[model_name] = enum
    return enum


def get_model_weights(model_name: str) -> type[WeightsEnum]:
    """The weights enum of ``model_name``; ValueError naming the models that have weights."""
    if model_name not in _WEIGHTS:
        raise ValueError(f"no published weights for {model_name!r}; models with weights: {sorted(_WEIGHTS)}")
    return _WEIGHTS[model_name]


def lookup_weights(name: str, model_name: str | None = None) -> WeightsEnum | None:
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
    weights = lookup_weights(name)
    if weights is None:
        raise ValueError(f"unknown weights {name!r}; expected one of {list_weights()} (or <model>.DEFAULT)")
    return weights


def list_weights(model_name: str | None = None) -> list[str]:
    """``"<model>.<MEMBER>"`` names of all weights (aliases like DEFAULT left out); ``model_name`` may be an
    fnmatch pattern."""
    return [f"{model}.{member.name}" for model, enum in sorted(_WEIGHTS.items())
            if fnmatch.fnmatch(model, model_name or "*") for member in enum]


def weights_name(weights: WeightsEnum) -> str:
    return f"{type(weights).__name__}.{weights.name}"


def recognise_file(file_name: str, sha256: Callable[[], str] | None = None) -> WeightsEnum | None:
    """The published entry a file is, by the SHA-256 prefix its entry records (``meta["sha256"]``): the prefix
    in ``file_name`` (torch.hub's ``name-<prefix>.pth``), else ``sha256()`` (the file's SHA-256, hex; computed
    only here, where the name tells nothing). None: no entry with a recorded hash matches."""
    entries = {member.value.url: member for enum in _WEIGHTS.values() for member in enum if member.meta.get("sha256")}
    prefix = hash_prefix(os.path.basename(file_name))
    found = [m for m in entries.values() if prefix is not None and m.meta["sha256"] == prefix]
    if not found and sha256 is not None:
        digest = sha256()
        found = [m for m in entries.values() if digest.startswith(m.meta["sha256"])]
    return found[0] if found else None
