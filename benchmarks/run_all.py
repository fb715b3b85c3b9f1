"""Run the benchmark scripts, each in its own process, and write the whole results file: table and notes.

    python -m benchmarks.run_all [--out benchmarks/RESULTS.md] [--gpu] [--quick]     (from the repository root)

CPU (the default, ``make bench``): inference, training, evaluation, data, NMS, hardware limit and, when the
trained demo exists, bf16 accuracy; run it on a quiet machine. ``--gpu``: the device-bound benchmarks
(inference without torch.compile, training, NMS, hardware limit) on CUDA, a few minutes. ``--quick``: one
round of the smallest cases, to check the scripts (its numbers are not measurements).
Everything in the file comes from here or from the scripts' rows: nothing is to be added by hand.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import COLUMNS, ROOT, describe, machine, module_command

HERE = Path(__file__).resolve().parent
CPU_SCRIPTS = [["inference"], ["training"], ["evaluation"], ["data"], ["nms"], ["roofline"], ["bf16_accuracy"]]
# A GPU runs a step in milliseconds: more rounds, same few minutes.
GPU_SCRIPTS = [["inference", "--no-compile", "--repeat", "20"], ["training", "--repeat", "10"],
               ["nms", "--repeat", "20"], ["roofline", "--repeat", "20"]]

# What each benchmark's rows compare, by the benchmark's name before " (device)": the notes under the table.
NOTES = {
    "inference, end to end": "`model(images)`, list of 500x375 photos in, detections out, for torchvision's "
    "`ssd300_vgg16` and ssd_zoo's with the same converted weights; each precision against torchvision in the same "
    "precision, bf16/fp16 also against torchvision fp32 (the bf16 target's baseline). \"torch.compile (both)\": "
    "both models compiled with the same settings (`dynamic=False`, no freezing: inductor fails to freeze "
    "torchvision's SSD). Outputs of the timed calls: fp32 labels and boxes of the top 150 against torchvision's; "
    "bf16/fp16: the share of the named reference's top 20 that ssd_zoo finds (same label, IoU >= 0.5).",
    "inference peak memory": "one forward, each model and precision in a fresh process of its own with only that "
    "model built; the peak resident (CPU) or allocated (CUDA) memory above what the process held before the "
    "forward, against torchvision in the same precision; the detections of that forward are compared as above.",
    "training step": "forward, loss, backward and SGD step on the same batch and targets, each precision against "
    "torchvision's step in the same precision, bf16/fp16 also against torchvision fp32; the losses of both models "
    "are compared under the same settings before timing.",
    "evaluation": "`VOCEvaluator` against `benchmarks.reference.voc_class_aps` (py-faster-rcnn's per-detection "
    "`voc_eval`, written from its description; every class AP compared) and `COCOEvaluator` against torchmetrics' "
    "`MeanAveragePrecision` (mAP, AP50, AP75 compared), on the same synthetic detections.",
    "data": "`SSDAugmentation` against torchvision's detection reference \"ssd\" recipe, same float32 photos, fill "
    "and seed, one thread; both must return the same images and boxes.",
    "NMS": "`ssd_zoo.ops.postprocess.grouped_nms` against `torchvision.ops.batched_nms` (whole batch; and per "
    "image, as torchvision's SSD calls it) and one `nms` call with coordinate offsets, on the same clipped "
    "candidates; the kept boxes must be the same.",
    "hardware limit": "GOP/s of `dense_predictions` (batch 8, channels_last) against the device's peak in that "
    "precision: the datasheet's for known GPUs, else the faster of a large convolution and a large matmul measured "
    "alongside in the same precision (`benchmarks.peak`; on a CPU also int8, through PT2E and oneDNN, with the "
    "oneDNN kernels each ran and their instruction set: AMX, AVX512_VNNI, AVX512_BF16, AVX512). CPU paths: fp32, "
    "bf16 autocast, PT2E int8, OpenVINO int8 (its convolution layers' time from OpenVINO's per-layer counters). "
    "Outputs: finite, scores sum to 1 (there is no alternative output).",
    "bf16 accuracy": "the trained shapes demo's VOC07 mAP through `recipes/eval_voc.py`, with and without `--amp`; "
    "skipped without `make demo`.",
}


def markdown(rows: list[dict[str, str]], info: dict[str, str], seconds: float, gpu: bool, quick: bool) -> str:
    lines = [
        "# ssd_zoo benchmarks",
        "",
        f"{describe(info)}; written by `python -m benchmarks.run_all{' --gpu' if gpu else ''}"
        f"{' --quick' if quick else ''}` in {seconds / 60:.1f} min.",
        "",
    ]
    if quick:
        lines += ["**A `--quick` smoke run: one round, no warm-up, smallest cases. Its numbers are not measurements.**",
                  ""]
    lines += [
        "Speed-up = the alternative's median time / ssd_zoo's (> 1: ssd_zoo is faster); medians of interleaved "
        "runs after a warm-up, both in the same process (memory: each in its own). torchvision and ssd_zoo share "
        "the same (converted) weights."
        + (" fp32 runs without TF32 (`benchmarks.harness.strict_fp32`)." if gpu else ""),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row.get(key, "").replace("|", "/") for key in COLUMNS) + " |" for row in rows]
    names = list(dict.fromkeys(row["benchmark"].split(" (")[0] for row in rows))
    lines += ["", "What each row compares:", ""]
    lines += [f"- **{name}**: {NOTES[name]}" for name in names if name in NOTES]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="the markdown file to write")
    parser.add_argument("--gpu", action="store_true", help="CUDA, device-bound benchmarks only")
    parser.add_argument("--quick", action="store_true", help="one round of the smallest cases")
    args = parser.parse_args()
    scripts = GPU_SCRIPTS if args.gpu else CPU_SCRIPTS
    device = ["--device", "cuda" if args.gpu else "cpu"]
    info = machine()  # before the runs: the load average is then the others' load, not ours
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.jsonl"
        for script, *extra in scripts:
            command, env = module_command(f"benchmarks.{script}", *device, *extra, "--json", str(rows_file))
            command += ["--quick"] if args.quick else []
            print(f"$ {' '.join(command[1:])}", flush=True)
            result = subprocess.run(command, cwd=ROOT, env={**env, "PYTHONWARNINGS": "ignore"})
            if result.returncode != 0:
                with open(rows_file, "a") as f:
                    f.write(json.dumps({"benchmark": script, "case": f"FAILED (exit code {result.returncode})"}) + "\n")
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, info, time.perf_counter() - start, args.gpu, args.quick))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
