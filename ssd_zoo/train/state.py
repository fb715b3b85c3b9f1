"""What a training checkpoint keeps, and how a run continues exactly from it.

``last.pth`` / ``best.pth`` hold ``model`` (state_dict), ``optimizer``, ``scheduler``, ``scaler`` (their
state_dicts), ``iteration`` (steps done), ``best_map`` (best VOC07 mAP so far, -1 before any), ``rng`` (every
generator's state, as tensors and numbers so that ``torch.load(weights_only=True)`` reads it), ``config`` (the
resolved :class:`~ssd_zoo.train.config.TrainConfig` as a dict) and ``class_names`` (no background).
"""
from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssd_zoo.files import read_file, save_atomic
from ssd_zoo.train.config import TrainConfig

RESUME_KEYS = ("model", "optimizer", "scheduler", "scaler", "iteration", "best_map", "rng", "config")


def rng_state() -> dict[str, Any]:
    """Every RNG training touches, as tensors and numbers, so checkpoints load with ``weights_only=True``."""
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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint (the keys of the module docstring); errors name the path and the missing keys."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: expected a checkpoint file at {os.fspath(path)!r}, found none")
    state = read_file(path)  # a truncated or corrupt file: an error that says so, with the path
    missing = sorted(set(RESUME_KEYS) - set(state)) if isinstance(state, dict) else list(RESUME_KEYS)
    if missing:
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"--resume {os.fspath(path)!r}: expected a checkpoint written by train_voc.py or ssd-zoo train (keys "
                         f"{list(RESUME_KEYS)}), found no {missing} (it has {found})")
    return state


@dataclass
class Run:
    """Everything the loop changes and a checkpoint keeps: the model and its optimiser state, the position."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    iteration: int = 0
    best_map: float = -1.0
    last_good: Path | None = None  # the newest checkpoint written (or resumed from)

    def save(self, path: Path, cfg: TrainConfig, class_names: list[str]) -> Path:
        """Write ``last.pth``/``best.pth`` atomically: weights, optimiser, schedule, scaler, position, RNG, config."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "iteration": self.iteration, "best_map": self.best_map, "rng": rng_state(),
                 "config": dataclasses.asdict(cfg), "class_names": list(class_names)}
        save_atomic(state, path)
        return path

    def restore(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Continue exactly from ``checkpoint`` (as :meth:`save` wrote it)."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.iteration, self.best_map, self.last_good = checkpoint["iteration"], checkpoint["best_map"], path
        set_rng_state(checkpoint["rng"])
