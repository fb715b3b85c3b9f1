"""TensorFlow's convolution unit in PyTorch: "SAME" padding, convolution, batch norm or bias, activation.

A TensorFlow graph pads ``"SAME"`` convolutions so that the output has ``ceil(input / stride)`` pixels and puts the
odd pixel of padding at the bottom and right: a 3x3 convolution at stride 2 pads an even-sized input by 0 above and
1 below, an odd-sized one by 1 and 1. PyTorch's ``padding=1`` would pad 1 and 1 always, shifting every output of
an even-sized input by half a pixel; :class:`SamePad2d` pads as TensorFlow does, from the input's size.

A :class:`TFConv` is what one TF-Slim ``conv2d`` / ``separable_conv2d`` scope computes (``Conv2D`` or
``DepthwiseConv2dNative``, then ``FusedBatchNorm`` or ``BiasAdd``, then ``Relu6`` / ``Relu``), described by a
:class:`ConvSpec` of plain data so that a model can be rebuilt from its record without the graph.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU}


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's ``"SAME"`` padding ``(before, after)`` of one axis of ``size`` pixels: the output has
    ``ceil(size / stride)`` pixels and the odd pixel of padding goes after (bottom, right)."""
    extent = (kernel - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


class SamePad2d(nn.Module):
    """Zero-pads ``[B, C, H, W]`` as TensorFlow's ``"SAME"`` does for a ``kernel`` x ``kernel`` window at
    ``stride`` (computed from each input's size: the padding of a stride-2 window depends on it)."""

    def __init__(self, kernel: int, stride: int, dilation: int = 1) -> None:
        super().__init__()
        self.kernel, self.stride, self.dilation = kernel, stride, dilation

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = same_padding(int(x.shape[-2]), self.kernel, self.stride, self.dilation)
        left, right = same_padding(int(x.shape[-1]), self.kernel, self.stride, self.dilation)
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"


@dataclass(frozen=True)
class ConvSpec:
    """One TensorFlow convolution unit, as plain data (JSON in a model's record).

    Attributes:
        in_channels, out_channels: channels in and out (a depthwise unit: ``out = in * multiplier``).
        kernel: the square window's side; stride: its step (both axes); dilation: its rate.
        depthwise: ``DepthwiseConv2dNative`` (one group per input channel) rather than ``Conv2D``.
        padding: ``"SAME"`` or ``"VALID"`` (TensorFlow's names).
        bias: a ``BiasAdd`` follows (an output conv, or batch norm folded into the weights).
        norm_eps: a ``FusedBatchNorm`` with this epsilon follows, None where none does.
        activation: ``"relu6"``, ``"relu"`` or None.
    """

    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    dilation: int = 1
    depthwise: bool = False
    padding: str = "SAME"
    bias: bool = False
    norm_eps: float | None = None
    activation: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> ConvSpec:
        return cls(**values)


class TFConv(nn.Sequential):
    """``[B, in, H, W]`` -> ``[B, out, H', W']``: (``pad``) ``conv`` (``bn``) (``act``) as :class:`ConvSpec`
    says; PyTorch's own layers, so fusing, quantising, exporting and fine-tuning treat it like any other."""

    def __init__(self, spec: ConvSpec) -> None:
        if spec.padding not in ("SAME", "VALID"):
            raise ValueError(f"TFConv: expected padding 'SAME' or 'VALID', found {spec.padding!r}")
        if spec.activation is not None and spec.activation not in ACTIVATIONS:
            raise ValueError(f"TFConv: expected an activation in {sorted(ACTIVATIONS)} or None, found {spec.activation!r}")
        layers: list[tuple[str, nn.Module]] = []
        padding = 0
        if spec.padding == "SAME" and spec.kernel > 1:
            if spec.stride == 1 and spec.kernel % 2 == 1:
                padding = (spec.kernel - 1) // 2 * spec.dilation  # symmetric: the conv pads itself
            else:
                layers.append(("pad", SamePad2d(spec.kernel, spec.stride, spec.dilation)))
        groups = spec.in_channels if spec.depthwise else 1
        layers.append(("conv", nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, padding,
                                         spec.dilation, groups=groups, bias=spec.bias)))
        if spec.norm_eps is not None:
            layers.append(("bn", nn.BatchNorm2d(spec.out_channels, eps=spec.norm_eps)))
        if spec.activation is not None:
            layers.append(("act", ACTIVATIONS[spec.activation](inplace=True)))
        super().__init__(OrderedDict(layers))
        self.spec = spec
