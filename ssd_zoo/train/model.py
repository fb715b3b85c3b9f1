"""The config-to-model rule: the one place a :class:`~ssd_zoo.train.config.TrainConfig` becomes an SSD.

Every program that builds a model from a training config (``recipes/train_voc.py``, ``recipes/eval_voc.py``,
``ssd-zoo train``, ``ssd-zoo anchors --config``) calls :func:`build_model` or :func:`model_to_evaluate`, so
that ``pad_to_square`` always means a letterboxing model and ``model: ssd`` always takes ``input_size``.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from ssd_zoo.files import read_file
from ssd_zoo.models.ssd import SSD
from ssd_zoo.registry import build
from ssd_zoo.train.config import TrainConfig
from ssd_zoo.models.record import RECORD_STATE_KEY
from ssd_zoo.weights.published import VGG16_Backbone_Weights
from ssd_zoo.weights.resolve import load_vgg16_backbone

PAD_FILL = (0.5, 0.5, 0.5)  # the colour pad_to_square pads with (RGB, 0..1), in the data and in the model
# What a training checkpoint's config decides about its model (the rest is data and schedule).
MODEL_KEYS = ("model", "backbone", "input_size", "model_kwargs", "pad_to_square")


def init_vgg16_backbone(model: nn.Module, path: str) -> None:
    """Load an ImageNet VGG16 file into ``model.backbone``; a missing file says where to get it and put it."""
    if not os.path.isfile(path):
        urls = [member.url for member in VGG16_Backbone_Weights]
        raise FileNotFoundError(
            f"backbone_init: expected the ImageNet VGG16 weights at {path!r}, found no file there. Download "
            f"{urls[0]} (or torchvision's {urls[1]}) and put it at that path, or pass "
            "--set backbone_init=/path/to/vgg16_reducedfc.pth (backbone_init=null trains from scratch)")
    load_vgg16_backbone(model.backbone, path)


def resize_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Builder keywords for ``cfg.pad_to_square``: the model letterboxes (pads to a square with ``PAD_FILL``,
    then resizes), so that its checkpoint remembers it and ``ssd-zoo detect`` pads as training did."""
    return {"resize": "letterbox", "pad_fill": PAD_FILL} if cfg.pad_to_square else {}


def builder_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keywords ``cfg`` gives :func:`ssd_zoo.build` besides classes and weights: ``model_kwargs``, then
    ``backbone``, ``input_size`` (``model: ssd``, where it is required) and the letterbox of ``pad_to_square``."""
    kwargs = dict(cfg.model_kwargs, **resize_kwargs(cfg))
    if cfg.backbone is not None:
        kwargs["backbone"] = cfg.backbone
    if cfg.model == "ssd":
        if cfg.backbone is None or cfg.input_size is None:
            raise ValueError(f"model='ssd': expected backbone and input_size, found {cfg.backbone!r}, {cfg.input_size!r}")
        kwargs["input_size"] = cfg.input_size
    return kwargs


def build_model(cfg: TrainConfig, num_classes: int | None, class_names: Sequence[str] | None = None,
                init_weights: str | os.PathLike | None = None) -> SSD:
    """The SSD that ``cfg`` names, for ``num_classes`` classes (with background; None: the weights', else the
    builder's default), backbone initialised.

    ``model: ssd`` is the registered generic builder at ``cfg.input_size`` (any size, e.g. the demo's 128);
    ``pad_to_square`` builds it with ``resize="letterbox"`` (:func:`resize_kwargs`).
    ``class_names`` (labels ``1..K``, no background) become the model's. ``init_weights`` (default
    ``cfg.init_weights``): weights to start from, through head surgery where their classes differ
    (:func:`ssd_zoo.build`); they replace ``backbone_init``.
    """
    init_weights = init_weights if init_weights is not None else cfg.init_weights
    kwargs = builder_kwargs(cfg)
    if init_weights is not None:  # an input size or default boxes in cfg must agree with the weights' record
        return build(cfg.model, weights=init_weights, num_classes=num_classes, class_names=class_names,
                     weights_class_names=cfg.weights_class_names, **kwargs)
    model = build(cfg.model, num_classes=num_classes, class_names=class_names, **kwargs)
    if cfg.backbone_init:
        init_vgg16_backbone(model, cfg.backbone_init)
    return model


def model_to_evaluate(cfg: TrainConfig, weights: str, class_names: Sequence[str]) -> tuple[SSD, TrainConfig]:
    """The model to evaluate, labelling the test set's ``class_names`` (no background), and the config it
    was built from (a training checkpoint brings its own :data:`MODEL_KEYS`). Weights that name the classes in
    another order, or other classes, go through head surgery (:func:`ssd_zoo.build`): each test class gets the
    weights' row of the same name (e.g. COCO weights on VOC), or a fresh one, with a warning, where the weights
    lack it. Weights that record no names are named as :mod:`ssd_zoo.weights.file_classes` says
    (``weights_class_names`` in the config, their layout's label space, or in order where the counts agree); other
    counts raise. ``weights``: a training checkpoint, any checkpoint ssd_zoo reads, or a published name."""
    if os.path.isfile(weights):
        state = read_file(weights)  # a truncated or corrupt file: an error that says so, with the path
        if isinstance(state, dict) and "model" in state and "config" in state:  # a training checkpoint
            # (its own class names, saved next to the weights, name its rows; weights_class_names overrides them;
            # a config of an earlier version may lack newer keys)
            cfg = dataclasses.replace(cfg, **{k: state["config"][k] for k in MODEL_KEYS if k in state["config"]},
                                      backbone_init=None, init_weights=None)
            return build_model(cfg, len(class_names) + 1, class_names, init_weights=weights), cfg
    if cfg.model == "ssd":
        raise ValueError(f"--weights {weights!r}: model='ssd' needs a checkpoint written by training")
    return build(cfg.model, weights=weights, class_names=class_names, weights_class_names=cfg.weights_class_names,
                 **builder_kwargs(cfg)), cfg



def with_default_boxes(model: SSD, cfg: TrainConfig) -> SSD:
    """``model``'s weights in the model ``cfg`` builds for the same classes, whose default boxes may differ (sizes
    and ratios fitted to new data, the same boxes per location, so every tensor keeps its shape). Weights refuse
    boxes other than those they were trained with (:func:`ssd_zoo.build`); this is the deliberate way past that:
    the box regression then learns the new boxes' offsets from a start that is close."""
    fresh = build_model(dataclasses.replace(cfg, init_weights=None, backbone_init=None), model.num_classes,
                        model.class_names[1:] if model.class_names else None)
    missing, unexpected = fresh.load_state_dict({k: v for k, v in model.state_dict().items() if k != RECORD_STATE_KEY},
                                                strict=False)
    if set(missing) - {RECORD_STATE_KEY} or unexpected:
        raise ValueError(f"default boxes {cfg.model_kwargs}: expected the same tensors as the weights' model, found "
                         f"missing {sorted(set(missing) - {RECORD_STATE_KEY})[:4]}, unexpected {sorted(unexpected)[:4]}")
    return fresh
