"""SSDLite on MobileNetV2 as the PyTorch ports of the MobileNetV2 paper (sec. 6.3) built it (qfgaohao/pytorch-ssd's
``mb2-ssd-lite``, lufficc/SSD's ``mobilenet_v2_ssd320``): torchvision's MobileNetV2, four inverted-residual extra
blocks, and depthwise-separable predictors whose depthwise conv has a bias, the last level a plain 1x1 conv.

Feature maps (channels @ side) at 300: 576@19 (the expansion of the first stride-32 block, as in the paper and
qfgaohao's port), 1280@10 (the last 1x1 conv), then 512@5 256@3 256@2 64@1 from the extra blocks. lufficc's port
takes the stride-16 map one layer earlier, the output of the last stride-16 block (96 channels):
``stride16_map="block"``.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models import mobilenet_v2
from torchvision.models.mobilenetv2 import InvertedResidual

from ssd_zoo.models.head import SSDHead

# torchvision's MobileNetV2 `features`: index of the first block at stride 32 (96 -> 160 channels).
_FIRST_STRIDE32_BLOCK = 14
# (output channels, expansion ratio) of the extra blocks, each an inverted residual at stride 2.
EXTRAS = ((512, 0.2), (256, 0.25), (256, 0.5), (64, 0.25))


class MobileNetV2LiteBackbone(nn.Module):
    """``[B, 3, S, S]`` -> six maps (see the module docstring): torchvision's ``mobilenet_v2().features`` (its own
    key names) and :data:`EXTRAS` as torchvision ``InvertedResidual`` blocks.

    ``stride16_map``: the first map is the expansion (1x1 conv, BN, ReLU6) of the first stride-32 block
    ("expansion", 576 channels) or the output of the block before it ("block", 96 channels).

    Attributes:
        out_channels: channels of each returned map, read by the head.
    """

    def __init__(self, extras: Sequence[tuple[int, float]] = EXTRAS, stride16_map: str = "expansion") -> None:
        super().__init__()
        if stride16_map not in ("expansion", "block"):
            raise ValueError(f"stride16_map: expected 'expansion' or 'block', found {stride16_map!r}")
        self.stride16_map = stride16_map
        self.features = mobilenet_v2(weights=None).features
        in_ch = self.features[-1].out_channels
        blocks = []
        for out_ch, ratio in extras:
            blocks.append(InvertedResidual(in_ch, out_ch, stride=2, expand_ratio=ratio))
            in_ch = out_ch
        self.extras = nn.ModuleList(blocks)
        if stride16_map == "expansion":
            first = self.features[_FIRST_STRIDE32_BLOCK].conv[0].out_channels
        else:
            first = self.features[_FIRST_STRIDE32_BLOCK - 1].out_channels
        self.out_channels = [first, self.features[-1].out_channels] + [c for c, _ in extras]

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for index, layer in enumerate(self.features):
            if index != _FIRST_STRIDE32_BLOCK:
                x = layer(x)
            elif self.stride16_map == "block":
                features.append(x)  # the last stride-16 block's output
                x = layer(x)
            else:
                # (expand 1x1, depthwise 3x3 stride 2, project 1x1, BN); stride 2, so no residual to skip
                x = layer.conv[0](x)
                features.append(x)  # the expansion, stride 16
                x = layer.conv[1:](x)
        features.append(x)  # the last 1x1 conv, stride 32
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        return features


def separable_predictor(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 depthwise conv (with a bias) + BN + ReLU6, then a 1x1 conv to ``out_ch``."""
    return nn.Sequential(OrderedDict([
        ("depthwise", nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch)),
        ("bn", nn.BatchNorm2d(in_ch)),
        ("act", nn.ReLU6(inplace=True)),
        ("pointwise", nn.Conv2d(in_ch, out_ch, 1)),
    ]))


class SeparableLiteHead(SSDHead):
    """:func:`separable_predictor` on every level but the last, which gets a plain 1x1 conv (its map is 1x1);
    same contract as :class:`ssd_zoo.models.head.SSDHead`."""

    def __init__(self, in_channels: list[int], boxes_per_location: list[int], num_classes: int) -> None:
        super().__init__(in_channels, boxes_per_location, num_classes)
        last_ch, last_k = in_channels[-1], boxes_per_location[-1]
        self.classification[-1] = nn.Conv2d(last_ch, last_k * num_classes, 1)
        self.regression[-1] = nn.Conv2d(last_ch, last_k * 4, 1)
        self.reset_parameters()

    def predictor(self, in_channels: int, out_channels: int) -> nn.Module:
        return separable_predictor(in_channels, out_channels)

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
