"""Any timm ``features_only`` model as an SSD backbone, plus the extra blocks that reach the SSD grid.

SSD predicts from a pyramid of square maps whose sides are fixed by its default boxes: 38/19/10/5/3/1 at
300, 64/32/16/8/4/2/1 at 512, 20/10/5/3/2/1 for SSDLite at 320. A timm backbone supplies the first
levels (its maps at strides 8/16/32, or 16/32 for SSDLite); extra blocks — a 1x1 reduction, then a 3x3
that shrinks the map — supply the rest. Nothing here is declared per model: the levels are chosen from
``feature_info.reduction()`` (among timm's default ``out_indices``, one per stage), channels come from
``feature_info.channels()``, the backbone maps' real sizes from one dummy forward pass at build time, and
the extra blocks' strides and paddings from the grid sizes they must produce.
"""
from __future__ import annotations

import difflib
import os
from collections import OrderedDict
from collections.abc import Sequence
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd_zoo.transform import IMAGENET_MEAN, IMAGENET_STD
from ssd_zoo.errors import require
from ssd_zoo.models.layers import conv_norm_act
from ssd_zoo.models.ssdlite import lite_extra_block

# A backbone map may miss the SSD grid by this many cells (floor vs ceil padding conventions, e.g. ConvNeXt's
# 37/18/9 at 300); it is then resampled onto the grid. A larger miss means a wrong stride: we raise.
MAX_GRID_MISMATCH = 2


def _timm() -> ModuleType:
    """timm, imported on first use so that ``import ssd_zoo`` works without the ``timm`` extra."""
    return require("timm", "timm")


def _close_matches(name: str) -> str:
    close = difflib.get_close_matches(name, _timm().list_models(), n=5, cutoff=0.6)
    return f"; close matches in timm.list_models(): {', '.join(close)}" if close else ""


def create_features(
    name: str,
    *,
    pretrained: bool = False,
    weights_path: str | os.PathLike | None = None,
    **timm_kwargs: object,
) -> nn.Module:
    """``timm.create_model(name, features_only=True, ...)`` with errors that say what to do.

    Args:
        name: a timm model name, optionally with a pretrained tag (``"resnet50.a1_in1k"``).
        pretrained: load timm's ImageNet weights through timm's own hub/cache.
        weights_path: a local ``.pth``/``.safetensors`` state dict of the timm model (its classifier keys
            are dropped), e.g. the ``model.safetensors`` of the model's Hugging Face repository.
        timm_kwargs: more ``timm.create_model`` keywords (e.g. ``feature_location="expansion"``).

    Raises:
        ValueError: unknown name, or an architecture timm cannot build with ``features_only=True``.
        FileNotFoundError: ``weights_path`` does not exist.
        RuntimeError: the weights could not be downloaded or loaded.
    """
    timm = _timm()
    if not timm.is_model(name):
        raise ValueError(f"timm backbone {name!r}: not a timm model{_close_matches(name)}")
    if weights_path is not None and not os.path.isfile(weights_path):
        raise FileNotFoundError(f"timm backbone {name!r}: backbone_weights file {os.fspath(weights_path)!r} not found")
    load = pretrained or weights_path is not None
    overlay = {"file": os.fspath(weights_path)} if weights_path is not None else None
    try:
        return timm.create_model(
            name, features_only=True, pretrained=load, pretrained_cfg_overlay=overlay, **timm_kwargs
        )
    except Exception as err:  # noqa: BLE001 - told apart below: building or loading weights?
        if not load:
            raise ValueError(
                f"timm backbone {name!r}: timm cannot build it with features_only=True ({type(err).__name__}: {err})"
                f"{_close_matches(name)}"
            ) from err
        create_features(name, **timm_kwargs)  # raises the ValueError above if the architecture is the problem
        if weights_path is not None:
            raise RuntimeError(
                f"timm backbone {name!r}: could not load backbone_weights={os.fspath(weights_path)!r} "
                f"({type(err).__name__}: {err}); expected a state dict of timm.create_model({name!r})"
            ) from err
        raise RuntimeError(
            f"timm backbone {name!r}: could not fetch timm's pretrained weights ({type(err).__name__}: {err}). "
            f"Without network, download them elsewhere (e.g. torch.save(timm.create_model({name!r}, "
            f"pretrained=True).state_dict(), 'backbone.pth'), or the model.safetensors of its Hugging Face repo) "
            f"and pass backbone_weights='backbone.pth' instead of pretrained_backbone=True"
        ) from err


def extra_block(in_ch: int, out_ch: int, *, stride: int, padding: int, batch_norm: bool) -> nn.Sequential:
    """SSD's extra layer: 1x1 conv to ``out_ch // 2``, then a 3x3 conv to ``out_ch`` (each + BN? + ReLU)."""
    mid = out_ch // 2
    reduce = conv_norm_act(in_ch, mid, 1, norm=batch_norm)
    shrink = conv_norm_act(mid, out_ch, 3, stride=stride, padding=padding, norm=batch_norm)
    return nn.Sequential(OrderedDict([("reduce", nn.Sequential(OrderedDict(reduce))),
                                      ("shrink", nn.Sequential(OrderedDict(shrink)))]))


def shrink_geometry(size: int, target: int) -> tuple[int, int]:
    """``(stride, padding)`` of a 3x3 conv that takes a ``size`` map to a ``target`` one.

    Halving (stride 2, padding 1: ``ceil(size / 2)``) is tried first, then the original SSD's valid 3x3
    (stride 1, padding 0: ``size - 2``, as in 5 -> 3 -> 1), then stride 2 without padding.
    """
    for stride, padding in ((2, 1), (1, 0), (2, 0)):
        if (size + 2 * padding - 3) // stride + 1 == target:
            return stride, padding
    raise ValueError(
        f"extra block: no 3x3 conv (stride 1 or 2, padding 0 or 1) takes a {size}x{size} map to {target}x{target}"
    )


def _uses_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _map_sizes(body: nn.Module, input_size: int, name: str, channels_last: bool) -> list[tuple[int, int]]:
    """``(H, W)`` of each map ``body`` returns for a ``[1, 3, input_size, input_size]`` input (eval, no grad)."""
    was_training = body.training
    body.eval()  # a zero image must not move the BatchNorm running statistics
    try:
        with torch.no_grad():
            maps = body(torch.zeros(1, 3, input_size, input_size))
    except Exception as err:  # noqa: BLE001 - e.g. a ViT with a fixed input size
        raise ValueError(
            f"timm backbone {name!r}: does not run on a {input_size}x{input_size} input "
            f"({type(err).__name__}: {err}); SSD{input_size} needs a backbone that accepts that size"
        ) from err
    finally:
        body.train(was_training)
    return [tuple(m.shape[1:3] if channels_last else m.shape[-2:]) for m in maps]


class TimmBackbone(nn.Module):
    """A timm ``features_only`` model plus extra blocks: ``[B, 3, S, S]`` -> one map per SSD level.

    Args:
        body: a model from :func:`create_features` (it returns a list of maps and has ``feature_info``).
        input_size: the square network input ``S`` in pixels (300, 512, 320, ...).
        grid: the side of each SSD level's map, e.g. ``[38, 19, 10, 5, 3, 1]`` (see :func:`~ssd_zoo.ops.default_boxes.grid_sides`).
        strides: the backbone strides that give the first levels; the remaining levels are extra blocks.
        extra_channels: output channels of the extra blocks, in order (only the first ones needed are used).
        lite: SSDLite extra blocks (depthwise, BN + ReLU6) instead of SSD's (BN + ReLU where the body has BN).
        extra_batch_norm: SSD extra blocks with BN (True) or plain convs with a bias (False, as Caffe SSD and
            the ports that copy it); None: BN where the body has BN.
        extra_geometry: ``(stride, padding)`` of each extra block's 3x3 conv where a publisher fixed them (e.g.
            the original SSD's valid 5 -> 3 where stride 2 would fit too); None: :func:`shrink_geometry`'s choice.

    Attributes:
        out_channels: channels of each returned map, read by the head.
        mean, std: the body's pretrained normalisation, RGB on the 0..1 scale, for :class:`SSDTransform`.
    """

    def __init__(
        self,
        body: nn.Module,
        *,
        input_size: int,
        grid: Sequence[int],
        strides: Sequence[int] = (8, 16, 32),
        extra_channels: Sequence[int] = (512, 256, 256, 256),
        lite: bool = False,
        extra_batch_norm: bool | None = None,
        extra_geometry: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        name = body.pretrained_cfg.get("architecture", type(body).__name__)
        self.channels_last = getattr(body, "output_fmt", "NCHW") == "NHWC"  # e.g. Swin, MambaOut
        self.levels = self._pick_levels(body, strides, name, input_size)
        sizes = _map_sizes(body, input_size, name, self.channels_last)
        found = [sizes[i] for i in self.levels]
        self.resample = self._resample_targets(found, grid[: len(strides)], strides, name, input_size)
        channels = [body.feature_info.channels()[i] for i in self.levels]
        batch_norm = _uses_batch_norm(body) if extra_batch_norm is None else extra_batch_norm
        self.extras = self._extras(channels[-1], grid[len(strides) - 1 :], extra_channels, lite, batch_norm,
                                   extra_geometry)
        self.out_channels = channels + [int(c) for c in extra_channels[: len(self.extras)]]
        self.mean = tuple(float(m) for m in body.pretrained_cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(float(s) for s in body.pretrained_cfg.get("std", IMAGENET_STD))

    @staticmethod
    def _pick_levels(body: nn.Module, strides: Sequence[int], name: str, input_size: int) -> list[int]:
        """Index of the (deepest) map at each stride in ``strides``, from ``feature_info.reduction()``."""
        reductions = list(body.feature_info.reduction())
        missing = [s for s in strides if s not in reductions]
        if missing:
            raise ValueError(
                f"timm backbone {name!r}: SSD{input_size} needs feature maps at strides {tuple(strides)}, but "
                f"feature_info.reduction() is {reductions} (no stride {missing}); pick a hierarchical (CNN-like) model"
            )
        return [max(i for i, r in enumerate(reductions) if r == s) for s in strides]

    @staticmethod
    def _resample_targets(
        found: list[tuple[int, int]], grid: Sequence[int], strides: Sequence[int], name: str, input_size: int,
    ) -> list[tuple[int, int] | None]:
        """Per backbone level, the grid ``(H, W)`` to resample its map to, or None where it already fits."""
        targets: list[tuple[int, int] | None] = []
        for size, side, stride in zip(found, grid, strides):
            if max(abs(s - side) for s in size) > MAX_GRID_MISMATCH:
                raise ValueError(
                    f"timm backbone {name!r}: at input {input_size} its stride-{stride} map is {size[0]}x{size[1]}, "
                    f"expected about {side}x{side} for the SSD grid"
                )
            targets.append(None if size == (side, side) else (side, side))
        return targets

    @staticmethod
    def _extras(
        in_ch: int, grid: Sequence[int], extra_channels: Sequence[int], lite: bool, batch_norm: bool,
        geometry: Sequence[tuple[int, int]] | None = None,
    ) -> nn.ModuleList:
        """One extra block per step of ``grid`` (``grid[0]`` is the last backbone map's side)."""
        if len(extra_channels) < len(grid) - 1:
            raise ValueError(
                f"extra_channels: expected at least {len(grid) - 1} entries for grid {list(grid)}, "
                f"found {list(extra_channels)}"
            )
        blocks = nn.ModuleList()
        if geometry is not None and len(geometry) != len(grid) - 1:
            raise ValueError(f"extra_geometry: expected {len(grid) - 1} (stride, padding) pairs for grid {list(grid)}, "
                             f"found {list(geometry)}")
        for k, (size, target, out_ch) in enumerate(zip(grid[:-1], grid[1:], extra_channels)):
            stride, padding = shrink_geometry(size, target) if geometry is None else geometry[k]
            if (size + 2 * padding - 3) // stride + 1 != target:
                raise ValueError(f"extra_geometry: block {k}'s 3x3 conv at stride {stride}, padding {padding} takes a "
                                 f"{size}x{size} map to {(size + 2 * padding - 3) // stride + 1}, expected {target}")
            if lite:
                blocks.append(lite_extra_block(in_ch, out_ch, stride=stride, padding=padding))
            else:
                blocks.append(extra_block(in_ch, out_ch, stride=stride, padding=padding, batch_norm=batch_norm))
            in_ch = out_ch
        for module in blocks.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        return blocks

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, S, S]`` normalised images -> maps ``[B, out_channels[k], grid[k], grid[k]]``."""
        maps = self.body(x)
        features = []
        for index, size in zip(self.levels, self.resample):
            f = maps[index].permute(0, 3, 1, 2) if self.channels_last else maps[index]  # (B, H, W, C) -> (B, C, H, W)
            if size is not None:  # a map a cell or two off the SSD grid (padding conventions differ)
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            features.append(f)
        x = features[-1]
        for block in self.extras:
            x = block(x)
            features.append(x)
        return features
