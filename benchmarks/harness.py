"""What every benchmark script shares: interleaved timing, the machine's description, precision, memory, rows.

A benchmark measures ssd_zoo and its alternative in one process, interleaved (A B A B ...) after a warm-up,
so that both see the same machine load; it reports medians, the ratio alternative / ssd_zoo (> 1: ssd_zoo
is faster) and whether the outputs agree. Rows go to stdout and, with ``--json PATH``, are appended to a
JSON-lines file that ``python -m benchmarks.run_all`` turns into the markdown table.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ssd_zoo.deploy.cpu import cpu_model, int8_isa

ROOT = Path(__file__).resolve().parents[1]  # the repository root
SAMPLES = ROOT / "assets"  # real VOC 2007 photos, shipped with the repository
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def module_command(module: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """``(command, environment)`` that run ``python -m module *args`` from :data:`ROOT` in a fresh process.

    The repository root goes on ``PYTHONPATH``, so that ``ssd_zoo`` and ``benchmarks`` import even where the
    package is not pip-installed; run the command with ``cwd=ROOT``.
    """
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return [sys.executable, "-m", module, *args], {**os.environ, "PYTHONPATH": path}


def parse_args(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None, **defaults: Any
) -> argparse.Namespace:
    """The common command line: ``--device``, ``--repeat``, ``--warmup``, ``--quick`` (a smoke run), ``--json``.

    ``extra`` adds a script's own arguments; ``defaults`` sets ``repeat`` and ``warmup``. On CUDA it also
    turns TF32 off (:func:`strict_fp32`), so that an "fp32" row is fp32.
    """
    parser = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(parser)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--repeat", type=int, default=defaults.get("repeat", 5), help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=defaults.get("warmup", 1), help="untimed rounds first")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, no warm-up, smallest cases")
    parser.add_argument("--json", type=Path, help="append the result rows to this JSON-lines file")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.warmup = 1, 0
    if args.device.startswith("cuda"):
        strict_fp32()
    return args


def strict_fp32() -> None:
    """No TF32 on CUDA: PyTorch lets cuDNN convolutions round fp32 inputs to TF32 by default, which makes an
    "fp32" row a TF32 row. Set once per process, so timing and the output checks see the same arithmetic."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def precisions(device: str) -> list[str]:
    """The precisions measured on ``device``: fp32 and bf16 autocast; fp16 autocast too on CUDA."""
    return ["fp32", "bf16"] + (["fp16"] if device.startswith("cuda") else [])


def autocast(precision: str, device: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``precision``'s dtype on ``device`` ("bf16", "fp16"); "fp32": no autocast."""
    dtype = DTYPES[precision]
    return torch.autocast(device.split(":")[0], dtype=dtype) if dtype else contextlib.nullcontext()


def machine() -> dict[str, str]:
    """CPU model and its int8 instruction set, cores, torch threads, load average, torch/torchvision versions;
    the GPU's name."""
    import torchvision

    info = {"cpu": f"{cpu_model()} ({int8_isa()})", "cores": str(os.cpu_count()), "threads": str(torch.get_num_threads()),
            "load": f"{os.getloadavg()[0]:.1f}", "torch": torch.__version__, "torchvision": torchvision.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def describe(info: dict[str, str]) -> str:
    """One line for a table's header, from :func:`machine`'s dict."""
    gpu = f"GPU: {info['gpu']}; " if "gpu" in info else ""
    return (f"CPU: {info['cpu']}, {info['cores']} cores, {info['threads']} torch threads, load average "
            f"{info['load']}; {gpu}torch {info['torch']}, torchvision {info['torchvision']}")


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(
    candidates: dict[str, Callable[[], Any]], *, repeat: int, warmup: int = 1, device: str = "cpu"
) -> dict[str, float]:
    """Median seconds per call of each candidate, run in turns (rotating who goes first each round)."""
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + repeat):
        order = names[round_ % len(names):] + names[: round_ % len(names)]
        for name in order:
            synchronize(device)
            start = time.perf_counter()
            candidates[name]()
            synchronize(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _status_mib(key: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak) of this process from ``/proc/self/status``, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(f"/proc/self/status: no {key} line")


def rss_peak_mib(fn: Callable[[], Any]) -> float:
    """Peak resident memory (MiB) that ``fn()`` adds to this process, above what is resident before it.

    Freed memory is first handed back (``gc``, glibc's ``malloc_trim``) and the peak is reset (writing 5 to
    ``/proc/self/clear_refs``), so that what the process did before, e.g. building models, does not count.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mib("VmRSS")
    fn()
    return _status_mib("VmHWM") - before


def cuda_peak_mib(fn: Callable[[], Any]) -> float:
    """Peak CUDA memory (MiB) allocated by ``fn()`` above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def voc_sized_images(batch: int, device: str = "cpu") -> list[torch.Tensor]:
    """``batch`` photo-like float ``[3, 375, 500]`` images in [0, 1] (VOC's most common size).

    The real sample photos in :data:`SAMPLES`, resized; a missing photo is an error, not a quiet substitute.
    """
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    paths = sorted(SAMPLES.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"benchmarks: expected the sample photos in {SAMPLES}, found none")
    photos = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255 for p in paths]
    photos = [F.interpolate(p[None], size=(375, 500), mode="bilinear")[0] for p in photos]
    return [photos[i % len(photos)].to(device) for i in range(batch)]


def detections_agree(expected: list[dict], found: list[dict], top: int = 150, atol: float = 1e-3) -> str:
    """"same" when each image's best ``top`` detections have equal labels and boxes within ``atol`` px.

    An image where the reference has no detection proves nothing: the result is then "UNCHECKED".
    """
    if len(expected) != len(found):
        return f"DIFFER ({len(found)} images, expected {len(expected)})"
    for i, (e, f) in enumerate(zip(expected, found)):
        if len(e["scores"]) == 0:
            return f"UNCHECKED (image {i}: the reference has no detections)"
        n = min(top, len(e["scores"]))
        if len(f["scores"]) < n or not torch.equal(e["labels"][:n].cpu(), f["labels"][:n].cpu()):
            return f"DIFFER (image {i}: labels)"
        error = (e["boxes"][:n].float().cpu() - f["boxes"][:n].float().cpu()).abs().max().item()
        if error > atol:
            return f"DIFFER (image {i}: boxes off by {error:.2g} px)"
    return f"same (top {top}, boxes within {atol:g} px)"


def top_reproduced(reference: list[dict], found: list[dict], top: int = 20, iou: float = 0.5) -> float:
    """Fraction of each image's best ``top`` reference detections that ``found`` has (same label, IoU >= iou).

    NaN when the reference has no detections at all (nothing to reproduce).
    """
    from torchvision.ops import box_iou

    hits = total = 0
    for r, f in zip(reference, found):
        boxes, labels = r["boxes"][:top].float().cpu(), r["labels"][:top].cpu()
        overlap = box_iou(boxes, f["boxes"].float().cpu())
        overlap[labels[:, None] != f["labels"].cpu()[None, :]] = 0
        hits += int((overlap.max(dim=1).values >= iou).sum()) if overlap.numel() else 0
        total += len(labels)
    return hits / total if total else math.nan


def reproduced(reference: list[dict], found: list[dict], what: str, top: int = 20) -> str:
    """:func:`top_reproduced` as a table cell: "95% of <what>'s top 20", or UNCHECKED without reference detections."""
    fraction = top_reproduced(reference, found, top)
    return f"UNCHECKED ({what} has no detections)" if math.isnan(fraction) else f"{fraction:.0%} of {what}'s top {top}"


def ratio(alternative: float, ours: float) -> str:
    return f"{alternative / ours:.2f}x"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds >= 0.1 else f"{seconds * 1e3:.1f} ms"


def emit(rows: list[dict[str, str]], json_path: Path | None) -> None:
    """Print ``rows`` (dicts with the keys of :data:`COLUMNS`) and append them to ``json_path`` if given."""
    for row in rows:
        print(" | ".join(f"{key}: {row.get(key, '')}" for key in COLUMNS), flush=True)
    if json_path is not None:
        with open(json_path, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


COLUMNS = ["benchmark", "case", "ssd_zoo", "alternative", "speed-up", "target", "outputs"]
