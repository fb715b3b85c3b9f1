"""SSDLite (MobileNetV2 paper, sec. 6.3; MobileNetV3 paper, sec. 6.2): SSD with depthwise-separable predictors.

Every 3x3 convolution of the SSD head becomes a 3x3 depthwise convolution + BatchNorm + ReLU6 followed
by a 1x1 convolution, and the extra layers become depthwise blocks (:func:`lite_extra_block`). The default boxes are torchvision's
``ssdlite320_mobilenet_v3_large`` ones: 6 maps (20/10/5/3/2/1 at 320), scales 0.2 ... 0.95 (and 1.0 for the
last level's extra square box), aspect ratios 2 and 3 on every level, centres at ``(j + 0.5) / f_k`` —
6 boxes per location, 3234 default boxes at 320.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from ssd_zoo.ops.default_boxes import DefaultBoxSpec, feature_grid
from ssd_zoo.models.head import SSDHead
from ssd_zoo.models.layers import conv_norm_act


def ssdlite_spec(input_size: int = 320, *, min_ratio: float = 0.2, max_ratio: float = 0.95) -> DefaultBoxSpec:
    """SSDLite default boxes (torchvision's ``DefaultBoxGenerator([[2, 3]] * 6, min_ratio, max_ratio)``).

    The first map is at stride 16 (``ceil(input_size / 16)``, 20 at 320); each further map halves (ceil)
    down to 1. Steps are ``input_size / side`` (fractional, e.g. 320/3), so centres sit at ``(j + 0.5) / side``.
    """
    grid = feature_grid(input_size, (16,))
    levels = len(grid)
    scales = [min_ratio + (max_ratio - min_ratio) * k / (levels - 1) for k in range(levels)] + [1.0]
    return DefaultBoxSpec(
        input_size,
        tuple(s * input_size for s in scales),
        ((2, 3),) * levels,
        tuple(input_size / side for side in grid),
    )


def lite_extra_block(in_ch: int, out_ch: int, *, stride: int, padding: int) -> nn.Sequential:
    """SSDLite's extra layer (torchvision's ``_extra_block``): 1x1 reduce, 3x3 depthwise, 1x1 expand; BN + ReLU6."""
    mid = out_ch // 2
    parts = [
        ("reduce", conv_norm_act(in_ch, mid, 1, act=nn.ReLU6)),
        ("depthwise", conv_norm_act(mid, mid, 3, stride=stride, padding=padding, groups=mid, act=nn.ReLU6)),
        ("expand", conv_norm_act(mid, out_ch, 1, act=nn.ReLU6)),
    ]
    return nn.Sequential(OrderedDict((name, nn.Sequential(OrderedDict(layers))) for name, layers in parts))


def _predictor(in_ch: int, out_ch: int, norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> nn.Sequential:
    """3x3 depthwise conv + BN + ReLU6, then a 1x1 conv to ``out_ch`` (torchvision's ``_prediction_block``)."""
    return nn.Sequential(OrderedDict([
        ("depthwise", nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False)),
        ("bn", norm_layer(in_ch)),
        ("act", nn.ReLU6(inplace=True)),
        ("pointwise", nn.Conv2d(in_ch, out_ch, 1)),
    ]))


class SSDLiteHead(SSDHead):
    """Depthwise-separable predictors; same contract as :class:`ssd_zoo.models.head.SSDHead`.

    Args:
        in_channels: channels of each feature map.
        boxes_per_location: default boxes per location on each map.
        num_classes: classes including background.
        norm_layer: the predictors' BatchNorm (torchvision's SSDLite: ``partial(nn.BatchNorm2d, eps=0.001,
            momentum=0.03)``).
    """

    def __init__(self, in_channels: list[int], boxes_per_location: list[int], num_classes: int, *,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        self.norm_layer = norm_layer  # read by predictor() during SSDHead.__init__
        super().__init__(in_channels, boxes_per_location, num_classes)

    def predictor(self, in_channels: int, out_channels: int) -> nn.Module:
        return _predictor(in_channels, out_channels, self.norm_layer)

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # torchvision's SSDLite init
                nn.init.normal_(module.weight, mean=0.0, std=0.03)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
