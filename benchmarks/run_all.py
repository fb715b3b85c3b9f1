"""Run the benchmark scripts, each in its own process, and write their rows as one markdown table.

    python -m benchmarks.run_all [--out benchmarks/RESULTS.md] [--gpu] [--quick]     (from the repository root)

CPU (the default, ``make bench``): inference, training, evaluation, data, hardware limit and, when the
trained demo exists, bf16 accuracy; about 10-12 minutes on 2 cores. ``--gpu``: only the device-bound benchmarks (inference without torch.compile, training,
hardware limit) on CUDA, a few minutes. ``--quick``: one round of the smallest cases, to check the scripts.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import COLUMNS, ROOT, machine, module_command

HERE = Path(__file__).resolve().parent
CPU_SCRIPTS = [["inference"], ["training"], ["evaluation"], ["data"], ["roofline"], ["bf16_accuracy"]]
# A GPU runs a step in milliseconds: more rounds, same few minutes.
GPU_SCRIPTS = [["inference", "--no-compile", "--repeat", "20"], ["training", "--repeat", "10"],
               ["roofline", "--repeat", "20"]]


def markdown(rows: list[dict[str, str]], info: dict[str, str], seconds: float) -> str:
    lines = [
        "# ssd_zoo benchmarks",
        "",
        f"CPU: {info['cpu']}, {info['threads']} threads; " + (f"GPU: {info['gpu']}; " if "gpu" in info else "")
        + f"torch {info['torch']}, torchvision {info['torchvision']}; written by `benchmarks/run_all.py` "
        f"in {seconds / 60:.1f} min.",
        "",
        "Speed-up = the alternative's median time / ssd_zoo's (> 1: ssd_zoo is faster); medians of interleaved "
        "runs after a warm-up, both in the same process. torchvision and ssd_zoo share the same (converted) weights.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row.get(key, "").replace("|", "/") for key in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="the markdown file to write")
    parser.add_argument("--gpu", action="store_true", help="CUDA, device-bound benchmarks only")
    parser.add_argument("--quick", action="store_true", help="one round of the smallest cases")
    args = parser.parse_args()
    scripts = GPU_SCRIPTS if args.gpu else CPU_SCRIPTS
    device = ["--device", "cuda" if args.gpu else "cpu"]
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
    args.out.write_text(markdown(rows, machine(), time.perf_counter() - start))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
