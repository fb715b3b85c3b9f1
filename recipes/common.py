"""What the recipes share: the model from a config, processes under torchrun, checkpoints, RNG state, records."""
from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

import ssd_zoo
from ssd_zoo.errors import InputError
from ssd_zoo.files import read_file, save_atomic  # noqa: F401  (the recipes' checkpoints, written atomically)
from ssd_zoo.weights.published import VGG16_Backbone_Weights
from ssd_zoo.weights.resolve import load_vgg16_backbone

from .config import TrainConfig


# --- the model -------------------------------------------------------------------------------------------
def init_vgg16_backbone(model: nn.Module, path: str) -> None:
    """Load an ImageNet VGG16 file into ``model.backbone``; a missing file says where to get it and put it."""
    if not os.path.isfile(path):
        urls = [member.url for member in VGG16_Backbone_Weights]
        raise FileNotFoundError(
            f"backbone_init: expected the ImageNet VGG16 weights at {path!r}, found no file there. Download "
            f"{urls[0]} (or torchvision's {urls[1]}) and put it at that path, or pass "
            "--set backbone_init=/path/to/vgg16_reducedfc.pth (backbone_init=null trains from scratch)")
    load_vgg16_backbone(model.backbone, path)


PAD_FILL = (0.5, 0.5, 0.5)  # the colour pad_to_square pads with (RGB, 0..1), in the data and in the model


def resize_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Builder keywords for ``cfg.pad_to_square``: the model letterboxes (pads to a square with ``PAD_FILL``,
    then resizes), so that its checkpoint remembers it and ``ssd-zoo detect`` pads as training did."""
    return {"resize": "letterbox", "pad_fill": PAD_FILL} if cfg.pad_to_square else {}


def build_model(cfg: TrainConfig, num_classes: int, class_names: Sequence[str] | None = None,
                init_weights: str | os.PathLike | None = None) -> ssd_zoo.SSD:
    """The SSD that ``cfg`` names, for ``num_classes`` classes (with background), backbone initialised.

    ``model: ssd`` is the registered generic builder at ``cfg.input_size`` (any size, e.g. the demo's 128);
    ``pad_to_square`` builds it with ``resize="letterbox"`` (:func:`resize_kwargs`).
    ``class_names`` (labels ``1..K``, no background) become the model's. ``init_weights`` (default
    ``cfg.init_weights``): weights to start from, through head surgery where their classes differ
    (:func:`ssd_zoo.build`); they replace ``backbone_init``.
    """
    init_weights = init_weights if init_weights is not None else cfg.init_weights
    kwargs = dict(cfg.model_kwargs, **resize_kwargs(cfg))
    if cfg.backbone is not None:
        kwargs["backbone"] = cfg.backbone
    if cfg.model == "ssd":
        if cfg.backbone is None or cfg.input_size is None:
            raise ValueError(f"model='ssd': expected backbone and input_size, found {cfg.backbone!r}, {cfg.input_size!r}")
        kwargs["input_size"] = cfg.input_size
    if init_weights is not None:  # an input size or default boxes in cfg must agree with the weights' record
        return ssd_zoo.build(cfg.model, weights=init_weights, num_classes=num_classes, class_names=class_names,
                             **kwargs)
    model = ssd_zoo.build(cfg.model, num_classes=num_classes, class_names=class_names, **kwargs)
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
        raise InputError("device='cuda' but torch.cuda.is_available() is False; pass --device cpu")
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


RESUME_KEYS = ("model", "optimizer", "scheduler", "scaler", "iteration", "best_map", "rng", "config")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A recipe checkpoint (keys: model, optimizer, scheduler, scaler, iteration, rng, config, best_map)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: expected a checkpoint file at {os.fspath(path)!r}, found none")
    state = read_file(path)  # a truncated or corrupt file: an error that says so, with the path
    missing = sorted(set(RESUME_KEYS) - set(state)) if isinstance(state, dict) else list(RESUME_KEYS)
    if missing:
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"--resume {os.fspath(path)!r}: expected a checkpoint written by train_voc.py (keys "
                         f"{list(RESUME_KEYS)}), found no {missing} (it has {found})")
    return state


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
