"""What the recipes share: the model from a config, processes under torchrun, checkpoints, RNG state, records."""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

import ssd_zoo
from ssd_zoo.ops.default_boxes import DefaultBoxSpec, preset

from .config import TrainConfig

# Where the VGG16 backbone files come from (ssd.pytorch's reduced-fc VGG, torchvision's ImageNet VGG16).
VGG16_URLS = (
    "https://s3.amazonaws.com/amdegroot-models/vgg16_reducedfc.pth",
    "https://download.pytorch.org/models/vgg16_features-amdegroot-88682ab5.pth",
)


# --- the model -------------------------------------------------------------------------------------------
def small_input_spec(input_size: int, anchors: str = "coco", box_sizes: tuple[float, ...] | None = None,
                     aspect_ratios: tuple[tuple[float, ...], ...] | None = None) -> DefaultBoxSpec:
    """Default boxes of an SSD at any ``input_size``: maps at strides 8/16/32, then halving down to 1.

    Each level's step is ``input_size / side`` so that the centres tile the image (a 192 input gets maps
    24/12/6/3/2/1 and steps 8/16/32/64/96/192). With 6 levels (inputs 161 to 256) the box sizes and aspect
    ratios are the 300 preset's, sizes scaled by ``input_size / 300``; with fewer levels (smaller inputs,
    e.g. for tests) the sizes are spaced evenly between the preset's smallest and largest.

    ``box_sizes`` (pixels of the input, one more than there are levels) and ``aspect_ratios`` (one tuple
    per level) replace the preset's when given, for data whose objects span another range of sizes.
    """
    grid = [math.ceil(input_size / stride) for stride in (8, 16, 32)]
    while grid[-1] > 1:
        grid.append(math.ceil(grid[-1] / 2))
    base = preset(300, anchors)
    if len(grid) > len(base.aspect_ratios):
        raise ValueError(f"input_size={input_size}: maps {grid} need {len(grid)} levels, the preset has "
                         f"{len(base.aspect_ratios)}; use an input size up to 256 (or 300/512 with the registry)")
    scale, levels = input_size / 300, len(grid)
    if levels == len(base.aspect_ratios):
        sizes, ratios = tuple(s * scale for s in base.sizes), base.aspect_ratios
    else:
        low, high = base.sizes[0] * scale, base.sizes[-1] * scale
        sizes = tuple(low + (high - low) * k / levels for k in range(levels + 1))
        ratios = base.aspect_ratios[: levels - 1] + base.aspect_ratios[-1:]
    wrong_sizes = box_sizes is not None and len(box_sizes) != levels + 1
    if wrong_sizes or (aspect_ratios is not None and len(aspect_ratios) != levels):
        raise ValueError(f"input_size={input_size}: maps {grid} are {levels} levels, so expected {levels + 1} box_sizes and "
                         f"{levels} aspect_ratios, found {box_sizes} and {aspect_ratios}")
    sizes = tuple(float(s) for s in box_sizes) if box_sizes is not None else sizes
    ratios = tuple(tuple(float(r) for r in level) for level in aspect_ratios) if aspect_ratios is not None else ratios
    return DefaultBoxSpec(input_size, sizes, ratios, tuple(input_size / side for side in grid), clip=base.clip)


def small_input_ssd(backbone: str, input_size: int, num_classes: int, *, anchors: str = "coco",
                    extra_channels: tuple[int, ...] = (256, 256, 128), timm_kwargs: dict | None = None,
                    box_sizes: tuple[float, ...] | None = None, aspect_ratios: tuple[tuple[float, ...], ...] | None = None,
                    **kwargs: Any) -> ssd_zoo.SSD:
    """An SSD on the timm model ``backbone`` at an ``input_size`` other than 300/512 (e.g. the demo's 128).

    ``anchors``, ``box_sizes`` and ``aspect_ratios`` choose the default boxes (see :func:`small_input_spec`);
    ``kwargs`` go to :class:`ssd_zoo.SSD` (e.g. ``iou_thresh``, the matching threshold)."""
    from ssd_zoo.models.timm_backbone import TimmBackbone, create_features

    spec = small_input_spec(input_size, anchors, box_sizes, aspect_ratios)
    grid = [round(input_size / step) for step in spec.steps]
    body = create_features(backbone, **(timm_kwargs or {}))
    net = TimmBackbone(body, input_size=input_size, grid=grid, extra_channels=extra_channels)
    head = ssd_zoo.SSDHead(net.out_channels, spec.boxes_per_location, num_classes)
    transform = ssd_zoo.SSDTransform(input_size, net.mean, net.std)
    return ssd_zoo.SSD(net, head, ssd_zoo.DefaultBoxGenerator(spec), transform, num_classes, **kwargs)


def init_vgg16_backbone(model: nn.Module, path: str) -> None:
    """Load an ImageNet VGG16 file into ``model.backbone``; a missing file says where to get it and put it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"backbone_init: expected the ImageNet VGG16 weights at {path!r}, found no file there. Download "
            f"{VGG16_URLS[0]} (or torchvision's {VGG16_URLS[1]}) and put it at that path, or pass "
            "--set backbone_init=/path/to/vgg16_reducedfc.pth (backbone_init=null trains from scratch)")
    from ssd_zoo.weights import load_vgg16_backbone

    load_vgg16_backbone(model.backbone, path)


def build_model(cfg: TrainConfig, num_classes: int) -> ssd_zoo.SSD:
    """The SSD that ``cfg`` names, for ``num_classes`` classes (with background), backbone initialised."""
    kwargs = dict(cfg.model_kwargs)
    if cfg.model == "ssd":
        if cfg.backbone is None or cfg.input_size is None:
            raise ValueError(f"model='ssd': expected backbone and input_size, found {cfg.backbone!r}, {cfg.input_size!r}")
        model = small_input_ssd(cfg.backbone, cfg.input_size, num_classes, **kwargs)
    else:
        if cfg.backbone is not None:
            kwargs["backbone"] = cfg.backbone
        model = ssd_zoo.build(cfg.model, num_classes=num_classes, **kwargs)
    if cfg.backbone_init:
        init_vgg16_backbone(model, cfg.backbone_init)
    return model


# --- processes -------------------------------------------------------------------------------------------
@dataclass
class Dist:
    """This process under torchrun (or alone): ``rank``, ``world_size``, ``device``; ``main`` is rank 0."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the torchrun process group (nccl on CUDA, gloo on the CPU) when ``WORLD_SIZE`` > 1."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch.cuda.is_available() is False; pass --device cpu")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    if world_size > 1:
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return Dist(rank, world_size, torch.device(device, local_rank) if device == "cuda" else torch.device("cpu"))


def all_reduce_mean(values: Tensor, ctx: Dist) -> Tensor:
    """The mean of ``values`` over processes (itself when alone)."""
    if ctx.world_size > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= ctx.world_size
    return values


# --- RNG state and checkpoints ---------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Every RNG the recipe touches, as tensors and numbers, so checkpoints load with ``weights_only=True``."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": int(pos), "numpy_gauss": [int(has_gauss), float(gauss)],
        "python": torch.tensor(py_state, dtype=torch.int64), "python_version": version, "python_gauss": py_gauss,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], int(has_gauss), gauss))
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to ``path`` + ".tmp", fsync, then rename: a crash mid-write leaves the old file intact."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A recipe checkpoint (keys: model, optimizer, scheduler, scaler, iteration, rng, config, best_map)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: expected a checkpoint file at {os.fspath(path)!r}, found none")
    return torch.load(path, map_location="cpu", weights_only=True)


# --- records ---------------------------------------------------------------------------------------------
class Recorder:
    """Scalars to ``log.jsonl`` in ``output_dir`` (one JSON object a line) and, if installed, TensorBoard."""

    def __init__(self, output_dir: str | Path, tensorboard: bool = True) -> None:
        self.path = Path(output_dir) / "log.jsonl"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # lazily: tensorboard is an optional extra
            except ImportError:
                print("tensorboard is not installed (pip install 'ssd_zoo[tensorboard]'); logging to log.jsonl only")
            else:
                self.writer = SummaryWriter(os.fspath(Path(output_dir) / "tensorboard"))

    def log(self, iteration: int, scalars: dict[str, float], prefix: str = "train") -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"iteration": iteration, "time": time.time(), "split": prefix, **scalars}) + "\n")
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
