"""A graceful stop for the training loop: SIGTERM or SIGINT finishes the current step, then the run stops.

What a preempted cloud job, a scheduler's time limit, ``kill PID`` or Ctrl-C get: the step in progress ends,
``last.pth`` is written (atomically, with the exact position), a line says how to resume, and the process exits
with ``128 + signal number`` (143 for SIGTERM, 130 for SIGINT). A second signal aborts at once (the signal's
default action), leaving the previous ``last.pth`` as it was. Under torchrun the processes agree after every
step, through one all-reduce of the signal number (the largest wins), so all of them stop after the same step
even when only one of them got the signal.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(SystemExit):
    """The run stopped on a signal after saving ``last.pth``: exits with ``128 + signum``; ``str()`` says how to
    resume."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(128 + signum)
        self.signum, self.message = signum, message

    def __str__(self) -> str:
        return self.message


class GracefulStop:
    """While entered (``with GracefulStop() as stop:``), SIGTERM/SIGINT set ``stop.signum`` instead of ending the
    process; the loop asks :meth:`agreed` after each step. Handlers are installed only in the main thread (the
    only one Python lets handle signals) and put back on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second signal: abort now, as if no handler were installed
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        print(f"\n{signal.Signals(signum).name} received: finishing the current step, then saving last.pth "
              "(send it again to abort at once)", file=sys.stderr, flush=True)

    def agreed(self, world_size: int, device: torch.device) -> int | None:
        """The signal that any process got (the same answer in every process), None while there is none.

        A collective call under torchrun: every process calls it once after every step."""
        if world_size == 1:
            return self.signum
        flag = torch.tensor([self.signum or 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None


def resume_command(checkpoint: os.PathLike | str, world_size: int, script: str = "recipes/train_voc.py") -> str:
    """The command line that continues a run of ``script`` from ``checkpoint`` (torchrun when it ran under
    torchrun); ``script`` may also be a command such as ``ssd-zoo train``, which is run as it is when alone."""
    if script.endswith(".py"):
        launcher = f"torchrun --nproc_per_node={world_size} " if world_size > 1 else "python "
    else:
        launcher = f"torchrun --nproc_per_node={world_size} -m ssd_zoo.cli " if world_size > 1 else ""
        script = script.removeprefix("ssd-zoo ") if world_size > 1 else script
    return f"{launcher}{script} --resume {os.fspath(checkpoint)}"
