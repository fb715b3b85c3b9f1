"""Inference, end to end: a list of VOC-sized photos in, detections out; ssd_zoo vs torchvision, same weights.

    python -m benchmarks.inference [--device cuda] [--repeat 3] [--warmup 1] [--no-compile] [--quick]
                                   [--json rows.jsonl]

``model(images)`` of torchvision's ``ssd300_vgg16`` and of ssd_zoo's with the same converted weights (21 classes),
per batch size (1 and 8) and precision (fp32, bf16 autocast; fp16 autocast too on CUDA, where fp32 runs without
TF32). Both sides run eager and, unless ``--no-compile``, both as ``torch.compile(model, dynamic=False)`` with the
same (default) inductor settings: no freezing, since inductor fails to freeze torchvision's SSD (torch 2.14).

Each precision is compared with torchvision in the same precision; bf16 and fp16 also, in rows of their own,
with torchvision fp32 (the baseline of the bf16 target). The outputs of the calls being timed are checked:
fp32 detections against torchvision's (labels and boxes of the top 150), bf16/fp16 by the share of the
reference's top 20 that ssd_zoo finds. Then the peak memory of one batch-8 forward per precision, each model
in a fresh process of its own, with the same checks on the detections of that forward.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import (ROOT, autocast, cuda_peak_mib, detections_agree, emit, interleaved, module_command,
                                ms, parse_args, precisions, ratio, reproduced, rss_peak_mib, voc_sized_images)
from benchmarks.reference import paired_models

SAME_PRECISION_TARGETS = {"fp32": ">= 1.5x", "bf16": "", "fp16": ""}
FP32_BASELINE_TARGETS = {"bf16": ">= 2.5x", "fp16": ""}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: "<model> <precision> <batch> <file>"


def runner(model: torch.nn.Module, images: list[torch.Tensor], precision: str, device: str) -> Callable[[], Any]:
    """A no-argument call of ``model(images)`` under inference mode and the precision's autocast."""
    def run() -> Any:
        with torch.inference_mode(), autocast(precision, device):
            return model(images)

    return run


def agreement(outputs: dict[str, list[dict]], mode: str, precision: str, baseline: str) -> str:
    """The outputs cell: ssd_zoo's ``mode`` / ``precision`` detections against torchvision's ``baseline``."""
    theirs, ours = outputs[f"torchvision {mode} {baseline}"], outputs[f"ssd_zoo {mode} {precision}"]
    if precision == baseline == "fp32":
        return detections_agree(theirs, ours)
    return reproduced(theirs, ours, f"torchvision {baseline}")


def speed_rows(args: argparse.Namespace, tv: torch.nn.Module, ours: torch.nn.Module, batch: int) -> list[dict]:
    device, images = args.device, voc_sized_images(batch, args.device)
    models = {"eager": (tv, ours)}
    if not args.no_compile:
        models["compiled"] = (torch.compile(tv, dynamic=False), torch.compile(ours, dynamic=False))
    candidates = {}
    for mode, (theirs, mine) in models.items():
        for precision in precisions(device):
            candidates[f"torchvision {mode} {precision}"] = runner(theirs, images, precision, device)
            candidates[f"ssd_zoo {mode} {precision}"] = runner(mine, images, precision, device)
    outputs = {name: run() for name, run in candidates.items()}  # also the compile, before any timing
    times = interleaved(candidates, repeat=args.repeat * (2 if batch == 1 else 1), warmup=args.warmup, device=device)
    rows = []
    for mode in models:
        label = "eager" if mode == "eager" else "torch.compile (both)"
        for precision in precisions(device):
            ours_s = times[f"ssd_zoo {mode} {precision}"]
            baselines = [precision] + (["fp32"] if precision != "fp32" else [])
            for baseline in baselines:
                theirs_s = times[f"torchvision {mode} {baseline}"]
                same = baseline == precision
                target = SAME_PRECISION_TARGETS[precision] if same else FP32_BASELINE_TARGETS[precision]
                rows.append({"benchmark": f"inference, end to end ({device})",
                             "case": f"{label}, batch {batch}, {precision} vs torchvision {baseline}",
                             "ssd_zoo": ms(ours_s), "alternative": f"torchvision {baseline}: {ms(theirs_s)}",
                             "speed-up": ratio(theirs_s, ours_s), "target": target,
                             "outputs": agreement(outputs, mode, precision, baseline)})
    return rows


def measure_memory(spec: str, device: str) -> None:
    """In a fresh process: print the peak memory (MiB) of one forward of ``spec`` = "<model> <precision> <batch>
    <file>", and save that forward's detections to ``<file>``. Only the measured model is kept."""
    name, precision, batch, path = spec.split(maxsplit=3)
    model = paired_models()[0 if name == "torchvision" else 1].to(device)  # the other one is freed here
    run = runner(model, voc_sized_images(int(batch), device), precision, device)
    detections = []
    peak = (cuda_peak_mib if device.startswith("cuda") else rss_peak_mib)(lambda: detections.extend(run()))
    torch.save([{key: value.cpu() for key, value in d.items()} for d in detections], path)
    print(peak)


def memory_rows(batch: int, device: str, quick: bool) -> list[dict[str, str]]:
    def peak(name: str, precision: str, folder: str) -> tuple[float, list[dict]]:
        path = Path(folder) / f"{name}-{precision}.pt"
        command, env = module_command("benchmarks.inference", "--device", device,
                                      "--memory-of", f"{name} {precision} {batch} {path}")
        out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
        return float(out.strip().splitlines()[-1]), torch.load(path)

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for precision in ["fp32"] if quick else precisions(device):
            theirs, expected = peak("torchvision", precision, folder)
            ours, found = peak("ssd_zoo", precision, folder)
            if precision == "fp32":
                outputs = detections_agree(expected, found)
            else:
                outputs = reproduced(expected, found, f"torchvision {precision}")
            rows.append({"benchmark": f"inference peak memory ({device})", "case": f"batch {batch}, {precision}",
                         "ssd_zoo": f"{ours:.0f} MiB", "alternative": f"torchvision {precision}: {theirs:.0f} MiB",
                         "speed-up": f"{theirs / ours:.2f}x less" if ours <= theirs else f"{ours / theirs:.2f}x more",
                         "target": "<= torchvision", "outputs": outputs})
    return rows


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], _arguments, repeat=3, warmup=1)
    if args.memory_of:
        return measure_memory(args.memory_of, args.device)
    tv, ours = (m.to(args.device) for m in paired_models())
    for batch in [1] if args.quick else [1, 8]:
        emit(speed_rows(args, tv, ours, batch), args.json)
    emit(memory_rows(1 if args.quick else 8, args.device, args.quick), args.json)


if __name__ == "__main__":
    main()
