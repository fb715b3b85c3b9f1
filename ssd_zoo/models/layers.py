"""Small building blocks shared by the SSD and SSDLite extra layers."""
from __future__ import annotations

from torch import nn


def conv_norm_act(
    in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, padding: int = 0, groups: int = 1,
    norm: bool = True, act: type[nn.Module] = nn.ReLU,
) -> list[tuple[str, nn.Module]]:
    """``[("conv", Conv2d), ("bn", BatchNorm2d), ("act", act)]`` (no "bn" and a conv bias when ``norm=False``)."""
    layers: list[tuple[str, nn.Module]] = [
        ("conv", nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups, bias=not norm))
    ]
    if norm:
        layers.append(("bn", nn.BatchNorm2d(out_ch)))
    return layers + [("act", act(inplace=True))]
