"""The original SSD backbone: VGG16 as in Caffe SSD (Liu et al. 2016, fig. 2).

conv1_1 ... conv4_3 (pool3 in ceil mode, so 300 -> 38), L2Norm on conv4_3 (learned per-channel scale,
initialised to 20), pool5 3x3 stride 1, fc6 as a 3x3 conv with dilation 6, fc7 as a 1x1 conv, then the
extra layers conv8 ... conv11 (conv12 at 512), each a 1x1 reduction followed by a 3x3 (4x4 for conv12).

Feature maps (channels @ size):  SSD300: 512@38 1024@19 512@10 256@5 256@3 256@1
                                 SSD512: 512@64 1024@32 512@16 256@8 256@4 256@2 256@1
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# VGG16 "configuration D": output channels of each conv, "M" a 2x2 max-pool.
_VGG16_STAGES = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


class L2Norm(nn.Module):
    """Normalise each location's channel vector to unit L2 norm, then scale it per channel (ParseNet).

    conv4_3's activations are much larger than the deeper maps'; this brings them to a common scale.
    """

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight.view(1, -1, 1, 1) * F.normalize(x, dim=1)


class CeilMaxPool2d(nn.Module):
    """``nn.MaxPool2d(2, 2, ceil_mode=True)`` written as padding the right and bottom edges of an odd-sized map
    with -inf, then a floor-mode pool: the same values, and a form that Inductor compiles in the int8 (PT2E)
    graph, where the ceil-mode pool fails ("Broadcast failed", torch 2.14)."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), value=float("-inf"))
        return F.max_pool2d(x, 2, 2)


def _conv_relu(name: str, in_ch: int, out_ch: int, kernel: int, **kw: int) -> list[tuple[str, nn.Module]]:
    """``[("conv<name>", Conv2d), ("relu<name>", ReLU)]``; a name that starts with "fc" is kept as is."""
    conv_name = name if name.startswith("fc") else f"conv{name}"
    return [(conv_name, nn.Conv2d(in_ch, out_ch, kernel, **kw)), (f"relu{name.removeprefix('fc')}", nn.ReLU(inplace=True))]


def _vgg_layers() -> tuple[nn.Sequential, nn.Sequential]:
    """conv1_1..relu4_3 (stride 8) and pool4..relu7 (stride 16), with VGG16's names."""
    layers: list[tuple[str, nn.Module]] = []
    in_ch = 3
    for stage, widths in enumerate(_VGG16_STAGES, start=1):
        if stage > 1:
            # pool3 rounds up so that a 300 input gives 38x38 at conv4_3, as in Caffe SSD.
            layers.append((f"pool{stage - 1}", CeilMaxPool2d() if stage == 4 else nn.MaxPool2d(2, 2)))
        for i, out_ch in enumerate(widths, start=1):
            layers += _conv_relu(f"{stage}_{i}", in_ch, out_ch, 3, padding=1)
            in_ch = out_ch
    split = [name for name, _ in layers].index("pool4")
    layers += [("pool5", nn.MaxPool2d(3, 1, padding=1))]
    layers += _conv_relu("fc6", 512, 1024, 3, padding=6, dilation=6)  # atrous: VGG's fc6 as a conv
    layers += _conv_relu("fc7", 1024, 1024, 1)
    return nn.Sequential(OrderedDict(layers[:split])), nn.Sequential(OrderedDict(layers[split:]))


def _extra_layers(input_size: int) -> nn.Sequential:
    """conv8 ... conv11 (and conv12 at 512): 1x1 reduce, then a 3x3 (4x4 for conv12) that shrinks the map."""
    # (name, in, mid, out, kernel, stride, padding)
    if input_size == 300:
        specs = [("8", 1024, 256, 512, 3, 2, 1), ("9", 512, 128, 256, 3, 2, 1),
                 ("10", 256, 128, 256, 3, 1, 0), ("11", 256, 128, 256, 3, 1, 0)]
    elif input_size == 512:
        specs = [("8", 1024, 256, 512, 3, 2, 1), ("9", 512, 128, 256, 3, 2, 1), ("10", 256, 128, 256, 3, 2, 1),
                 ("11", 256, 128, 256, 3, 2, 1), ("12", 256, 128, 256, 4, 1, 1)]
    else:
        raise ValueError(f"VGG16 SSD: expected input_size 300 or 512, found {input_size}")
    blocks = OrderedDict()
    for name, in_ch, mid, out_ch, kernel, stride, padding in specs:
        blocks[f"conv{name}"] = nn.Sequential(OrderedDict(
            _conv_relu(f"{name}_1", in_ch, mid, 1) + _conv_relu(f"{name}_2", mid, out_ch, kernel, stride=stride, padding=padding)
        ))
    return nn.Sequential(blocks)


# What conv4_3's map goes through before its head: the paper's L2Norm, or (qfgaohao/pytorch-ssd's vgg16-ssd
# since it replaced its ScaledL2Norm to export to ONNX) a BatchNorm2d(512), module name -> class.
CONV4_3_NORMS = {"l2": ("l2norm", lambda: L2Norm(512)), "batch_norm": ("bn4_3", lambda: nn.BatchNorm2d(512))}


class VGG16Backbone(nn.Module):
    """The SSD VGG16 feature extractor: ``[B, 3, S, S]`` -> list of feature maps (see module docstring).

    ``conv4_3_norm``: "l2" (``l2norm``: :class:`L2Norm`, the paper's) or "batch_norm" (``bn4_3``: a
    ``BatchNorm2d(512)``, qfgaohao's ONNX-friendly vgg16-ssd) on conv4_3's map before its head.

    Attributes:
        out_channels: channels of each returned map, read by the head.
    """

    def __init__(self, input_size: int = 300, conv4_3_norm: str = "l2") -> None:
        super().__init__()
        if conv4_3_norm not in CONV4_3_NORMS:
            raise ValueError(f"VGG16Backbone: conv4_3_norm={conv4_3_norm!r}: expected one of {sorted(CONV4_3_NORMS)}")
        self.features, self.fc = _vgg_layers()  # up to conv4_3 (stride 8); pool4 to fc7 (stride 16)
        self.norm_name, make_norm = CONV4_3_NORMS[conv4_3_norm]
        self.add_module(self.norm_name, make_norm())
        self.extras = _extra_layers(input_size)
        for module in self.extras.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.out_channels = [512, 1024] + [block[-2].out_channels for block in self.extras]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.features(x)
        features = [getattr(self, self.norm_name)(x)]
        x = self.fc(x)
        features.append(x)
        for block in self.extras:
            x = block(x)
            features.append(x)
        return features
