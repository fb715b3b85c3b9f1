"""Inference, end to end: a list of VOC-sized photos in, detections out; ssd_zoo vs torchvision, same weights.

    python -m benchmarks.inference [--device cuda] [--repeat 3] [--no-compile] [--quick] [--json rows.jsonl]

Per batch size (1 and 8): torchvision's ``ssd300_vgg16`` and ssd_zoo's (converted weights, 21 classes) in
fp32 and under autocast (bf16 on CPU; fp16 and bf16 on CUDA), and ``torch.compile(model)``; then the peak
memory of one batch-8 forward, each model in a fresh process.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import subprocess
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.harness import (ROOT, cuda_peak_mib, detections_agree, emit, interleaved, module_command, ms,
                                paired_models, parse_args, ratio, rss_peak_mib, top_reproduced, voc_sized_images)

TARGETS = {"fp32": ">= 1.5x", "bf16": ">= 2.5x vs torchvision fp32", "fp16": ""}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: "<model> <precision> <batch>"


def runner(model: torch.nn.Module, images: list[torch.Tensor], precision: str, device: str) -> Callable[[], Any]:
    """A no-argument call of ``model(images)`` under inference mode and the precision's autocast."""
    dtype = DTYPES[precision]

    def run() -> Any:
        autocast = torch.autocast(device.split(":")[0], dtype=dtype) if dtype else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            return model(images)

    return run


def measure_memory(spec: str, device: str) -> None:
    """In a fresh process: print the peak memory (MiB) of one forward of ``spec`` = "<model> <precision> <batch>"."""
    name, precision, batch = spec.split()
    tv, ours = paired_models()
    model = (tv if name == "torchvision" else ours).to(device)
    run = runner(model, voc_sized_images(int(batch), device), precision, device)
    print((cuda_peak_mib if device.startswith("cuda") else rss_peak_mib)(run))


def memory_rows(precisions: list[str], batch: int, device: str) -> list[dict[str, str]]:
    def peak(name: str, precision: str) -> float:
        command, env = module_command("benchmarks.inference", "--device", device, "--memory-of", f"{name} {precision} {batch}")
        out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
        return float(out.strip().splitlines()[-1])

    baseline = peak("torchvision", "fp32")
    rows = []
    for precision in precisions:
        ours = peak("ssd_zoo", precision)
        rows.append({"benchmark": f"inference peak memory ({device})", "case": f"batch {batch}, {precision}",
                     "ssd_zoo": f"{ours:.0f} MiB", "alternative": f"torchvision fp32: {baseline:.0f} MiB",
                     "speed-up": f"{baseline / ours:.2f}x less" if ours > 0 else "-",
                     "target": "<= torchvision fp32", "outputs": ""})
    return rows


def main() -> None:
    # The first call of each candidate (which also compiles) is the warm-up; batch 1 gets twice the rounds.
    args = parse_args(__doc__.split("\n")[0], _arguments, repeat=3, warmup=0)
    device = args.device
    if args.memory_of:
        return measure_memory(args.memory_of, device)
    precisions = ["fp32", "fp16", "bf16"] if device.startswith("cuda") else ["fp32", "bf16"]
    tv, ours = (m.to(device) for m in paired_models())
    if not args.no_compile and device == "cpu":
        # Inference only, so inductor may treat the weights as constants: pre-packed for oneDNN, ReLU fused in.
        importlib.import_module("torch._inductor.config").freezing = True
    compiled = None if args.no_compile else torch.compile(ours, dynamic=False)
    rows = []
    for batch in [1] if args.quick else [1, 8]:
        images = voc_sized_images(batch, device)
        candidates = {}
        for precision in precisions:
            candidates[f"torchvision {precision}"] = runner(tv, images, precision, device)
            candidates[f"ssd_zoo {precision}"] = runner(ours, images, precision, device)
            if compiled is not None:
                candidates[f"compiled {precision}"] = runner(compiled, images, precision, device)
        outputs = {name: run() for name, run in candidates.items()}  # also the compile, before any timing
        if device.startswith("cuda"):  # compare fp32 outputs without TF32, which rounds each layout differently
            with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                outputs.update({name: candidates[name]() for name in candidates if name.endswith("fp32")})
        repeat = args.repeat * (2 if batch == 1 else 1)
        times = interleaved(candidates, repeat=repeat, warmup=args.warmup, device=device)
        base = times["torchvision fp32"]
        for precision in precisions:
            for kind in ["ssd_zoo"] + ([] if compiled is None else ["compiled"]):
                ours_s, theirs_s = times[f"{kind} {precision}"], times[f"torchvision {precision}"]
                speed_up = ratio(theirs_s, ours_s)
                if precision != "fp32":
                    speed_up += f" ({ratio(base, ours_s)} vs torchvision fp32)"
                    same = f"{top_reproduced(outputs['ssd_zoo fp32'], outputs[f'{kind} {precision}']):.0%} of fp32's top 20"
                else:
                    same = detections_agree(outputs["torchvision fp32"], outputs[f"{kind} fp32"])
                label = "ssd_zoo" if kind == "ssd_zoo" else "torch.compile(ssd_zoo)"
                rows.append({"benchmark": f"inference, end to end ({device})", "case": f"{label}, batch {batch}, {precision}",
                             "ssd_zoo": ms(ours_s), "alternative": f"torchvision {precision}: {ms(theirs_s)}",
                             "speed-up": speed_up, "target": TARGETS[precision], "outputs": same})
        emit(rows[-len(precisions) * (1 if compiled is None else 2):], args.json)
    emit(memory_rows(["fp32"] if args.quick else precisions, 1 if args.quick else 8, device), args.json)


if __name__ == "__main__":
    main()
