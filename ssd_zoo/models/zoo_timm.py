"""SSDs on timm backbones: the generic ``ssd`` / ``ssd300`` / ``ssd512`` / ``ssdlite320`` and the named variants.

    >>> ssd_zoo.build("ssd300", backbone="regnetx_002", num_classes=21)   # any timm features_only model
    >>> ssd_zoo.build("ssd300_resnet50", pretrained_backbone=True)        # timm's ImageNet weights
    >>> ssd_zoo.build("ssdlite320_mobilenetv3_large", backbone_weights="mobilenetv3.safetensors")
    >>> ssd_zoo.build("ssd", backbone="resnet18", input_size=128, box_sizes=[14, 34, 52, 84, 109, 134])

Every builder takes ``weights`` (a checkpoint path or URL in ssd_zoo's layout), ``num_classes`` (default 21,
VOC with background) and the keywords of :func:`timm_ssd`; the rest reach :class:`ssd_zoo.SSD`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ssd_zoo.ops.default_boxes import DefaultBoxSpec, default_box_spec, grid_sides
from ssd_zoo.registry import register_model
from ssd_zoo.weights.resolve import builder_config, fetch_weights
from ssd_zoo.models.builder import assemble_ssd
from ssd_zoo.models.head import SSDHead
from ssd_zoo.models.ssd import SSD
from ssd_zoo.models.ssdlite import SSDLiteHead, ssdlite_spec
from ssd_zoo.models.timm_backbone import TimmBackbone, create_features


def timm_ssd(
    backbone: str,
    input_size: int | None,
    *,
    model_name: str | None = None,
    weights: Any = None,
    num_classes: int | None = None,
    lite: bool = False,
    anchors: str | None = None,
    box_sizes: Sequence[float] | None = None,
    aspect_ratios: Sequence[Sequence[float]] | None = None,
    pretrained_backbone: bool = False,
    backbone_weights: str | os.PathLike | None = None,
    extra_channels: Sequence[int] | None = None,
    timm_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> SSD:
    """An SSD (or SSDLite) on the timm model ``backbone``.

    Args:
        backbone: a timm model name with ``features_only`` support, e.g. ``"resnet50"``.
        input_size: the square input (None: the weights', else 300), e.g. 300 or 512 (SSD, maps from strides 8/16/32, the paper's grids),
            128 (maps 16/8/4/2/1, see :func:`~ssd_zoo.ops.default_boxes.default_box_spec`), or 320 (SSDLite,
            strides 16/32).
        model_name: the registered name, for weights lookup and messages (default ``"ssd"``).
        weights: a checkpoint path or URL in ssd_zoo's layout of this exact model.
        num_classes: classes including background (default 21).
        lite: SSDLite head, extra blocks and default boxes (see :mod:`ssd_zoo.models.ssdlite`).
        anchors: SSD default boxes, ``"voc"`` (default) or ``"coco"``; SSDLite has its own.
        box_sizes, aspect_ratios: the data's own default-box sizes (pixels of the input, one more than there
            are maps) and ratios (one tuple per map), replacing the preset's.
        pretrained_backbone: timm's ImageNet weights through timm's hub/cache.
        backbone_weights: a local ``.pth``/``.safetensors`` state dict of the timm model.
        extra_channels: channels of the extra blocks (default 512, 256, 256, 256; SSDLite 512, 256, 256, 128).
        timm_kwargs: more ``timm.create_model`` keywords.
        kwargs: ``resize`` and ``pad_fill`` reach :class:`~ssd_zoo.transform.SSDTransform` (default: the
            weights', else ``"stretch"``), the rest :class:`ssd_zoo.SSD` (``score_thresh``, ``nms_thresh``, ...).
    """
    if lite and (anchors, box_sizes, aspect_ratios) != (None, None, None):
        raise ValueError(f"anchors={anchors!r}: SSDLite has its own default boxes; anchors, box_sizes and "
                         "aspect_ratios apply to SSD")
    checkpoint = fetch_weights(weights, model_name or "ssd")
    num_classes, preset_name = builder_config(checkpoint, num_classes, anchors)
    input_size = input_size or (checkpoint.input_size if checkpoint else None) or 300
    spec = ssdlite_spec(input_size) if lite else default_box_spec(input_size, preset_name, box_sizes, aspect_ratios)
    if extra_channels is None:
        extra_channels = (512, 256, 256, 128) if lite else (512, 256, 256, 256)

    def network(boxes: DefaultBoxSpec) -> TimmBackbone:
        body = create_features(backbone, pretrained=pretrained_backbone, weights_path=backbone_weights,
                               **(timm_kwargs or {}))
        return TimmBackbone(body, input_size=input_size, grid=grid_sides(boxes),
                            strides=(16, 32) if lite else (8, 16, 32), extra_channels=extra_channels, lite=lite)

    # mean/std: the timm body's pretrained normalisation (TimmBackbone.mean/std), unless the weights record theirs
    return assemble_ssd(network, SSDLiteHead if lite else SSDHead, spec, num_classes, checkpoint,
                        explicit_boxes=(anchors, box_sizes, aspect_ratios) != (None, None, None), **kwargs)


# The generic builders: any timm backbone by name.
@register_model
def ssd(*, backbone: str, input_size: int | None = None, weights: Any = None, num_classes: int | None = None,
        **kwargs: Any) -> SSD:
    """SSD on any timm ``backbone`` at any square ``input_size`` (default: the weights', else 300), e.g. the
    demo's 128 (maps 16/8/4/2/1); ``box_sizes`` / ``aspect_ratios`` / ``anchors`` choose the default boxes
    (see :func:`timm_ssd`)."""
    return timm_ssd(backbone, input_size, model_name="ssd", weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssd300(*, backbone: str, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD300 on any timm ``backbone``: maps 38/19/10 from strides 8/16/32, extras 5/3/1; 8732 default boxes."""
    return timm_ssd(backbone, 300, model_name="ssd300", weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssd512(*, backbone: str, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSD512 on any timm ``backbone``: maps 64/32/16 from strides 8/16/32, extras 8/4/2/1; 24564 default boxes."""
    return timm_ssd(backbone, 512, model_name="ssd512", weights=weights, num_classes=num_classes, **kwargs)


@register_model
def ssdlite320(*, backbone: str, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """SSDLite320 on any timm ``backbone``: maps 20/10 from strides 16/32, extras 5/3/2/1; 3234 default boxes."""
    return timm_ssd(backbone, 320, model_name="ssdlite320", weights=weights, num_classes=num_classes, lite=True,
                    **kwargs)


# The named variants: (name, timm backbone, input size, SSDLite?, timm keywords, docstring).
_EXPANSION = {"feature_location": "expansion"}
_VARIANTS = [
    ("ssd300_resnet18", "resnet18", 300, False, {}, "SSD300 on ResNet-18 (layer2/3/4 at strides 8/16/32)."),
    ("ssd300_resnet50", "resnet50", 300, False, {}, "SSD300 on ResNet-50 (layer2/3/4 at strides 8/16/32)."),
    ("ssd512_resnet50", "resnet50", 512, False, {}, "SSD512 on ResNet-50."),
    ("ssd300_mobilenetv2", "mobilenetv2_100", 300, False, {}, "SSD300 on MobileNetV2 (width 1.0)."),
    ("ssd300_mobilenetv3_large", "mobilenetv3_large_100", 300, False, {}, "SSD300 on MobileNetV3-Large (width 1.0)."),
    ("ssdlite320_mobilenetv2", "mobilenetv2_100", 320, True, _EXPANSION,
     "SSDLite320 on MobileNetV2, tapping the expansion of layer 15 (576 ch) and the last expansion (960 ch)."),
    ("ssdlite320_mobilenetv3_large", "mobilenetv3_large_100", 320, True, _EXPANSION,
     "SSDLite320 on MobileNetV3-Large, tapped as torchvision's: stride-16 expansion (672 ch), last conv (960 ch)."),
    ("ssd300_efficientnet_b3", "efficientnet_b3", 300, False, {}, "SSD300 on EfficientNet-B3."),
    ("ssd300_convnext_tiny", "convnext_tiny", 300, False, {},
     "SSD300 on ConvNeXt-Tiny (its 37/18/9 maps at 300 are resampled onto 38/19/10; extras without BN)."),
]


def _variant(name: str, backbone: str, input_size: int, lite: bool, timm_kwargs: dict[str, Any], doc: str) -> None:
    """Register ``name``: :func:`timm_ssd` with this backbone and size; the caller's keywords merged in."""
    def builder(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
        merged = {**timm_kwargs, **kwargs.pop("timm_kwargs", {})}
        return timm_ssd(backbone, input_size, model_name=name, weights=weights, num_classes=num_classes, lite=lite,
                        timm_kwargs=merged, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    register_model(builder)


for _spec in _VARIANTS:
    _variant(*_spec)
del _spec
