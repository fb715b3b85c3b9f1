"""Registered SSD variants: one short builder each, merging its defaults with the caller's keywords."""
from __future__ import annotations

from typing import Any

from ssd_zoo.ops.default_boxes import default_box_spec
from ssd_zoo.registry import register_model
from ssd_zoo.transform import CAFFE_MEAN, CAFFE_STD
from ssd_zoo.weights.resolve import builder_config, fetch_weights
from ssd_zoo.models.builder import assemble_ssd
from ssd_zoo.models.head import SSDHead
from ssd_zoo.models.ssd import SSD
from ssd_zoo.models.vgg import VGG16Backbone


def _vgg16_ssd(name: str, input_size: int, weights: Any, num_classes: int | None, anchors: str | None,
               **kwargs: Any) -> SSD:
    # Weights first: named weights and checkpoint files decide num_classes, default boxes, normalisation and
    # class names unless given; a given value that contradicts them raises.
    checkpoint = fetch_weights(weights, name, pretrained=kwargs.pop("pretrained", None))
    num_classes, preset_name = builder_config(checkpoint, num_classes, anchors)
    # box_sizes / aspect_ratios: the data's own default boxes (ssd-zoo anchors --fit), as the timm builders take
    box_sizes, aspect_ratios = kwargs.pop("box_sizes", None), kwargs.pop("aspect_ratios", None)
    spec = default_box_spec(input_size, preset_name, box_sizes, aspect_ratios)
    return assemble_ssd(lambda _: VGG16Backbone(input_size), SSDHead, spec, num_classes, checkpoint, mean=CAFFE_MEAN,
                        std=CAFFE_STD, explicit_boxes=(anchors, box_sizes, aspect_ratios) != (None, None, None), **kwargs)


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
