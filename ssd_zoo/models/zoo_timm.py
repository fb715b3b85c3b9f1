"""SSDs on timm backbones: the generic ``ssd300`` / ``ssd512`` / ``ssdlite320`` and the named variants.

    >>> ssd_zoo.build("ssd300", backbone="regnetx_002", num_classes=21)   # any timm features_only model
    >>> ssd_zoo.build("ssd300_resnet50", pretrained_backbone=True)        # timm's ImageNet weights
    >>> ssd_zoo.build("ssdlite320_mobilenetv3_large", backbone_weights="mobilenetv3.safetensors")

Every builder takes ``weights`` (a local ssd_zoo checkpoint), ``num_classes`` (default 21, VOC with
background) and the keywords of :func:`timm_ssd`; the rest reach :class:`ssd_zoo.SSD`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..ops.default_boxes import DefaultBoxGenerator, preset
from ..registry import register_model
from ..transform import SSDTransform
from .head import SSDHead
from .ssd import SSD
from .ssdlite import SSDLiteHead, ssdlite_spec
from .timm_backbone import TimmBackbone, create_features, ssd_grid
from .zoo import load_checkpoint


def timm_ssd(
    backbone: str,
    input_size: int,
    *,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    lite: bool = False,
    anchors: str | None = None,
    pretrained_backbone: bool = False,
    backbone_weights: str | os.PathLike | None = None,
    extra_channels: Sequence[int] | None = None,
    timm_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> SSD:
    """An SSD (or SSDLite) on the timm model ``backbone``.

    Args:
        backbone: a timm model name with ``features_only`` support, e.g. ``"resnet50"``.
        input_size: 300 or 512 (SSD, maps from strides 8/16/32), or e.g. 320 (SSDLite, strides 16/32).
        weights: a local ssd_zoo checkpoint of this exact model.
        num_classes: classes including background (default 21).
        lite: SSDLite head, extra blocks and default boxes (see :mod:`ssd_zoo.models.ssdlite`).
        anchors: SSD default boxes, ``"voc"`` (default) or ``"coco"``; SSDLite has its own.
        pretrained_backbone: timm's ImageNet weights through timm's hub/cache.
        backbone_weights: a local ``.pth``/``.safetensors`` state dict of the timm model.
        extra_channels: channels of the extra blocks (default 512, 256, 256, 256; SSDLite 512, 256, 256, 128).
        timm_kwargs: more ``timm.create_model`` keywords.
        kwargs: reach :class:`ssd_zoo.SSD` (``score_thresh``, ``nms_thresh``, ``iou_thresh``, ...).
    """
    if lite and anchors is not None:
        raise ValueError(f"anchors={anchors!r}: SSDLite has its own default boxes; anchors applies to SSD300/SSD512")
    num_classes = 21 if num_classes is None else num_classes
    spec = ssdlite_spec(input_size) if lite else preset(input_size, anchors or "voc")
    if extra_channels is None:
        extra_channels = (512, 256, 256, 128) if lite else (512, 256, 256, 256)
    body = create_features(
        backbone, pretrained=pretrained_backbone, weights_path=backbone_weights, **(timm_kwargs or {})
    )
    net = TimmBackbone(
        body, input_size=input_size, grid=ssd_grid(spec), strides=(16, 32) if lite else (8, 16, 32),
        extra_channels=extra_channels, lite=lite,
    )
    head = (SSDLiteHead if lite else SSDHead)(net.out_channels, spec.boxes_per_location, num_classes)
    transform = SSDTransform(input_size, net.mean, net.std)
    model = SSD(net, head, DefaultBoxGenerator(spec), transform, num_classes, **kwargs)
    if weights is not None:
        load_checkpoint(model, weights)
    return model


# The generic builders: any timm backbone by name.
@register_model
def ssd300(*, backbone: str, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD300 on any timm ``backbone``: maps 38/19/10 from strides 8/16/32, extras 5/3/1; 8732 default boxes."""
    return timm_ssd(backbone, 300, weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssd512(*, backbone: str, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD512 on any timm ``backbone``: maps 64/32/16 from strides 8/16/32, extras 8/4/2/1; 24564 default boxes."""
    return timm_ssd(backbone, 512, weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssdlite320(*, backbone: str, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSDLite320 on any timm ``backbone``: maps 20/10 from strides 16/32, extras 5/3/2/1; 3234 default boxes."""
    return timm_ssd(backbone, 320, weights=weights, num_classes=num_classes, lite=True, **kwargs)


# The named variants.
@register_model
def ssd300_resnet18(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD300 on ResNet-18 (layer2/3/4 at strides 8/16/32)."""
    return ssd300(backbone="resnet18", weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssd300_resnet50(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD300 on ResNet-50 (layer2/3/4 at strides 8/16/32)."""
    return ssd300(backbone="resnet50", weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssd512_resnet50(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD512 on ResNet-50."""
    return ssd512(backbone="resnet50", weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssd300_mobilenetv2(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD300 on MobileNetV2 (width 1.0)."""
    return ssd300(backbone="mobilenetv2_100", weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssd300_mobilenetv3_large(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD300 on MobileNetV3-Large (width 1.0)."""
    return ssd300(backbone="mobilenetv3_large_100", weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssdlite320_mobilenetv2(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSDLite320 on MobileNetV2, tapping the expansion of layer 15 (576 ch) and the last expansion (960 ch)."""
    timm_kwargs = {"feature_location": "expansion", **kwargs.pop("timm_kwargs", {})}
    return ssdlite320(
        backbone="mobilenetv2_100", weights=weights, num_classes=num_classes, timm_kwargs=timm_kwargs, **kwargs
    )


@register_model
def ssdlite320_mobilenetv3_large(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSDLite320 on MobileNetV3-Large, tapped as torchvision's: stride-16 expansion (672 ch), last conv (960 ch)."""
    timm_kwargs = {"feature_location": "expansion", **kwargs.pop("timm_kwargs", {})}
    return ssdlite320(
        backbone="mobilenetv3_large_100", weights=weights, num_classes=num_classes, timm_kwargs=timm_kwargs, **kwargs
    )


@register_model
def ssd300_efficientnet_b3(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD300 on EfficientNet-B3."""
    return ssd300(backbone="efficientnet_b3", weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssd300_convnext_tiny(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD300 on ConvNeXt-Tiny (its 37/18/9 maps at 300 are resampled onto 38/19/10; extras without BN)."""
    return ssd300(backbone="convnext_tiny", weights=weights, num_classes=num_classes, **kwargs)
