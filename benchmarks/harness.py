"""What every benchmark script shares: interleaved timing, the machine's description, same-weight models, rows.

A benchmark measures ssd_zoo and its alternative in one process, interleaved (A B A B ...) after a warm-up,
so that both see the same machine load; it reports medians, the ratio alternative / ssd_zoo (> 1: ssd_zoo
is faster) and whether the outputs agree. Rows go to stdout and, with ``--json PATH``, are appended to a
JSON-lines file that ``python -m benchmarks.run_all`` turns into the markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]  # the repository root


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

    ``extra`` adds a script's own arguments; ``defaults`` sets ``repeat`` and ``warmup``.
    """
    parser = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(parser)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--repeat", type=int, default=defaults.get("repeat", 5), help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=defaults.get("warmup", 1), help="untimed rounds first")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, smallest cases")
    parser.add_argument("--json", type=Path, help="append the result rows to this JSON-lines file")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.warmup = 1, 0
    return args


def machine() -> dict[str, str]:
    """CPU model, torch threads, torch/torchvision versions and the GPU's name (if any)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torchvision

    info = {"cpu": cpu, "threads": str(torch.get_num_threads()), "torch": torch.__version__,
            "torchvision": torchvision.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


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


def rss_peak_mib(fn: Callable[[], Any]) -> float:
    """Peak resident memory (MiB) that ``fn()`` adds to this process; meaningful once per fresh process."""
    def current() -> float:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20

    before = current()
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before  # ru_maxrss is KiB on Linux


def cuda_peak_mib(fn: Callable[[], Any]) -> float:
    """Peak CUDA memory (MiB) allocated by ``fn()`` above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def paired_models(num_classes: int = 21, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """torchvision's ``ssd300_vgg16`` and ssd_zoo's with the same (random, converted) weights, in eval mode.

    The heads are scaled as in the parity test, so that scores spread out and detections are comparable.
    """
    import torchvision

    import ssd_zoo
    from ssd_zoo.convert import from_torchvision

    torch.manual_seed(seed)
    tv = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes)
    with torch.no_grad():
        for conv in tv.head.classification_head.module_list:
            conv.weight.mul_(0.05)
        for conv in tv.head.regression_head.module_list:
            conv.weight.mul_(0.01)
    ours = ssd_zoo.build("ssd300_vgg16", num_classes=num_classes, anchors="coco")
    ours.load_state_dict(from_torchvision(tv.state_dict()))
    return tv.eval(), ours.eval()


def voc_sized_images(batch: int, device: str = "cpu", seed: int = 0) -> list[torch.Tensor]:
    """``batch`` photo-like float ``[3, 375, 500]`` images in [0, 1] (VOC's most common size).

    Real sample photos from ``../shared/samples`` when present (resized), else smooth random images.
    """
    import torch.nn.functional as F

    samples = sorted((Path(__file__).resolve().parents[2] / "shared" / "samples").glob("*.jpg"))
    if samples:
        from torchvision.io import ImageReadMode, decode_image

        photos = [decode_image(str(p), mode=ImageReadMode.RGB).float() / 255 for p in samples]
        photos = [F.interpolate(p[None], size=(375, 500), mode="bilinear")[0] for p in photos]
    else:
        generator = torch.Generator().manual_seed(seed)
        photos = [F.interpolate(torch.rand(1, 3, 24, 32, generator=generator), size=(375, 500), mode="bilinear")[0]]
    return [photos[i % len(photos)].to(device) for i in range(batch)]


def detections_agree(expected: list[dict], found: list[dict], top: int = 150, atol: float = 1e-3) -> str:
    """"same" when each image's best ``top`` detections have equal labels and boxes within ``atol`` px."""
    for i, (e, f) in enumerate(zip(expected, found)):
        n = min(top, len(e["scores"]))
        if len(f["scores"]) < n or not torch.equal(e["labels"][:n].cpu(), f["labels"][:n].cpu()):
            return f"DIFFER (image {i}: labels)"
        error = (e["boxes"][:n].float() - f["boxes"][:n].float()).abs().max().item() if n else 0.0
        if error > atol:
            return f"DIFFER (image {i}: boxes off by {error:.2g} px)"
    return f"same (top {top}, boxes within {atol:g} px)"


def top_reproduced(reference: list[dict], found: list[dict], top: int = 20, iou: float = 0.5) -> float:
    """Fraction of each image's best ``top`` reference detections that ``found`` has (same label, IoU >= iou)."""
    from torchvision.ops import box_iou

    hits = total = 0
    for r, f in zip(reference, found):
        boxes, labels = r["boxes"][:top].float().cpu(), r["labels"][:top].cpu()
        overlap = box_iou(boxes, f["boxes"].float().cpu())
        overlap[labels[:, None] != f["labels"].cpu()[None, :]] = 0
        hits += int((overlap.max(dim=1).values >= iou).sum()) if overlap.numel() else 0
        total += len(labels)
    return hits / max(total, 1)


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
