"""Registered SSD variants: one short builder each, merging its defaults with the caller's keywords."""
from __future__ import annotations

from typing import Any

from ..ops.default_boxes import DefaultBoxGenerator, preset
from ..registry import register_model
from ..transform import SSDTransform
from ..weights import builder_config, fetch_weights
from .head import SSDHead
from .ssd import SSD
from .vgg import VGG16Backbone


def _vgg16_ssd(name: str, input_size: int, weights: Any, num_classes: int | None, anchors: str | None,
               **kwargs: Any) -> SSD:
    # Weights first: named weights and checkpoint files decide num_classes and anchors unless given.
    checkpoint = fetch_weights(weights, name, pretrained=kwargs.pop("pretrained", None))
    num_classes, anchors = builder_config(checkpoint, num_classes, anchors)
    spec = preset(input_size, anchors)
    backbone = VGG16Backbone(input_size)
    head = SSDHead(backbone.out_channels, spec.boxes_per_location, num_classes)
    model = SSD(backbone, head, DefaultBoxGenerator(spec), SSDTransform(input_size), num_classes, **kwargs)
    if checkpoint is not None:
        checkpoint.load_into(model)
    return model


@register_model
def ssd300_vgg16(*, weights: Any = None, num_classes: int | None = None, anchors: str | None = None, **kwargs: Any) -> SSD:
    """SSD300 with the original VGG16 backbone: 8732 default boxes on maps 38/19/10/5/3/1.

    ``weights``: None, "DEFAULT" (= "VOC0712"), "VOC0712" (ssd.pytorch, 21 classes, anchors="voc"),
    "COCO_V1" (torchvision, 91 classes, anchors="coco"), a ``SSD300_VGG16_Weights`` member, or a checkpoint
    path or URL (ssd_zoo, torchvision or ssd.pytorch layout). Without weights: 21 classes (VOC), anchors="voc".
    """
    return _vgg16_ssd("ssd300_vgg16", 300, weights, num_classes, anchors, **kwargs)


@register_model
def ssd512_vgg16(*, weights: Any = None, num_classes: int | None = None, anchors: str | None = None, **kwargs: Any) -> SSD:
    """SSD512 with the original VGG16 backbone: 24564 default boxes on maps 64/32/16/8/4/2/1.

    ``weights``: None, a checkpoint path or URL (any supported layout); no published weights are registered.
    Without weights: 21 classes (VOC), anchors="voc".
    """
    return _vgg16_ssd("ssd512_vgg16", 512, weights, num_classes, anchors, **kwargs)
