"""Registered SSD variants: one short builder each, merging its defaults with the caller's keywords."""
from __future__ import annotations

import os
from typing import Any

import torch

from ..ops.default_boxes import DefaultBoxGenerator, preset
from ..registry import register_model
from ..transform import SSDTransform
from .head import SSDHead
from .ssd import SSD
from .vgg import VGG16Backbone


def load_checkpoint(model: SSD, path: str | os.PathLike) -> SSD:
    """Load an ssd_zoo state dict (a ``.pth`` file, or a dict with a ``"model"`` entry) into ``model``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    model.load_state_dict(state)
    return model


def _vgg16_ssd(input_size: int, weights: Any, num_classes: int | None, anchors: str, **kwargs: Any) -> SSD:
    num_classes = 21 if num_classes is None else num_classes
    spec = preset(input_size, anchors)
    backbone = VGG16Backbone(input_size)
    head = SSDHead(backbone.out_channels, spec.boxes_per_location, num_classes)
    model = SSD(backbone, head, DefaultBoxGenerator(spec), SSDTransform(input_size), num_classes, **kwargs)
    if weights is not None:
        load_checkpoint(model, weights)
    return model


@register_model
def ssd300_vgg16(*, weights: Any = None, num_classes: int | None = None, anchors: str = "voc", **kwargs: Any) -> SSD:
    """SSD300 with the original VGG16 backbone: 8732 default boxes on maps 38/19/10/5/3/1 (21 classes = VOC)."""
    return _vgg16_ssd(300, weights, num_classes, anchors, **kwargs)


@register_model
def ssd512_vgg16(*, weights: Any = None, num_classes: int | None = None, anchors: str = "voc", **kwargs: Any) -> SSD:
    """SSD512 with the original VGG16 backbone: 24564 default boxes on maps 64/32/16/8/4/2/1."""
    return _vgg16_ssd(512, weights, num_classes, anchors, **kwargs)
