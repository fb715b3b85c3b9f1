"""MobileNetV3-Large as d-li14/mobilenetv3.pytorch builds it, with SSDLite extra blocks: lufficc/SSD's
``mobilenet_v3`` backbone (``ssd/modeling/backbone/mobilenetv3.py``, MIT).

It is not torchvision's or timm's MobileNetV3-Large, so neither can stand in:

- in a block that expands, the squeeze-excite sits *between* the depthwise BN and its activation
  (1x1, BN, act, kxk depthwise, BN, SE, act, 1x1, BN); torchvision and timm apply it after the activation;
- the squeeze-excite is two ``nn.Linear`` (C -> make_divisible(C // 4, 8) -> C), ReLU between, then the hard
  sigmoid ``relu6(x + 3) / 6``; the stem and the last 1x1 conv use h-swish, the blocks as the paper's table 1;
- every BatchNorm has PyTorch's default eps, 1e-5 (torchvision's MobileNetV3 uses 1e-3).

The four extra blocks are the same inverted residual (SE and h-swish, stride 2, hidden channels
make_divisible(C * ratio, 8)). Maps at 320 (channels @ side): 112@20 (the last stride-16 block), 960@10 (the last
1x1 conv), then 512@5 256@3 256@2 64@1.
"""
from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

# Per block: (kernel, expansion, out channels, squeeze-excite, h-swish (else ReLU), stride); MobileNetV3-Large.
LARGE = (
    (3, 1, 16, False, False, 1), (3, 4, 24, False, False, 2), (3, 3, 24, False, False, 1),
    (5, 3, 40, True, False, 2), (5, 3, 40, True, False, 1), (5, 3, 40, True, False, 1),
    (3, 6, 80, False, True, 2), (3, 2.5, 80, False, True, 1), (3, 2.3, 80, False, True, 1),
    (3, 2.3, 80, False, True, 1), (3, 6, 112, True, True, 1), (3, 6, 112, True, True, 1),
    (5, 6, 160, True, True, 2), (5, 6, 160, True, True, 1), (5, 6, 160, True, True, 1),
)
STEM_CHANNELS, LAST_CHANNELS = 16, 960
# (out channels, hidden channels as a fraction of the input) of the extra blocks.
EXTRAS = ((512, 0.2), (256, 0.25), (256, 0.5), (64, 0.25))


def make_divisible(value: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """A bias-free conv with "same" padding, then BatchNorm (``conv``, ``bn``)."""
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)),
        ("bn", nn.BatchNorm2d(out_ch)),
    ]))


class SqueezeExcite(nn.Module):
    """``x * hard_sigmoid(expand(relu(reduce(mean over H, W of x))))``, with linear layers."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels // 4)
        self.reduce = nn.Linear(channels, squeezed)
        self.expand = nn.Linear(squeezed, channels)

    def forward(self, x: Tensor) -> Tensor:
        weights = F.hardsigmoid(self.expand(F.relu(self.reduce(x.mean(dim=(2, 3))))))  # (B, C)
        return x * weights[:, :, None, None]


class InvertedResidual(nn.Module):
    """d-li14's block: ``[B, in_ch, H, W]`` -> ``[B, out_ch, H / stride, W / stride]`` (+ x where shapes allow).

    With ``hidden != in_ch``: expand 1x1 + BN + act, depthwise + BN, SE, act, project 1x1 + BN.
    With ``hidden == in_ch`` (no expansion): depthwise + BN + act, SE, project 1x1 + BN.
    """

    def __init__(self, in_ch: int, hidden: int, out_ch: int, kernel: int, stride: int, se: bool,
                 hswish: bool) -> None:
        super().__init__()
        self.expand = conv_bn(in_ch, hidden, 1) if hidden != in_ch else None
        self.depthwise = conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.se = SqueezeExcite(hidden) if se else nn.Identity()
        self.act = nn.Hardswish() if hswish else nn.ReLU()
        self.project = conv_bn(hidden, out_ch, 1)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        if self.expand is not None:
            y = self.act(self.se(self.depthwise(self.act(self.expand(x)))))  # SE before the activation
        else:
            y = self.se(self.act(self.depthwise(x)))
        y = self.project(y)
        return x + y if self.residual else y


class MobileNetV3DLi14Backbone(nn.Module):
    """``[B, 3, S, S]`` -> six maps (see the module docstring).

    ``extra_kernel``: the extra blocks' depthwise kernel, 3 in lufficc's current code, 1 in its first version
    (a checkpoint's ``extras.N`` depthwise weights say which).

    Attributes:
        out_channels: channels of each returned map, read by the head.
    """

    def __init__(self, extra_kernel: int = 3) -> None:
        super().__init__()
        self.stem = conv_bn(3, STEM_CHANNELS, 3, stride=2)
        blocks, in_ch = [], STEM_CHANNELS
        for kernel, expansion, out_ch, se, hswish, stride in LARGE:
            hidden = make_divisible(in_ch * expansion)
            blocks.append(InvertedResidual(in_ch, hidden, out_ch, kernel, stride, se, hswish))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.last = conv_bn(in_ch, LAST_CHANNELS, 1)
        extras, in_ch = [], LAST_CHANNELS
        for out_ch, ratio in EXTRAS:
            extras.append(InvertedResidual(in_ch, make_divisible(in_ch * ratio), out_ch, extra_kernel, 2, True, True))
            in_ch = out_ch
        self.extras = nn.ModuleList(extras)
        # The stride-16 map: the output of the block before the last strided one.
        self.tap = max(i for i, block in enumerate(LARGE) if block[-1] == 2) - 1
        self.out_channels = [LARGE[self.tap][2], LAST_CHANNELS] + [c for c, _ in EXTRAS]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = F.hardswish(self.stem(x))
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == self.tap:
                features.append(x)
        x = F.hardswish(self.last(x))
        features.append(x)
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        return features
