"""The training records: scalars to ``log.jsonl`` (one JSON object a line) and, if installed, TensorBoard."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path


class Recorder:
    """Scalars to ``output_dir/log.jsonl`` (``{"iteration", "time", "split", <scalars>}`` a line) and, with
    ``tensorboard`` and the package installed, to ``output_dir/tensorboard/`` as ``<split>/<name>``."""

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
