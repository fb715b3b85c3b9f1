"""Does bf16 autocast cost accuracy? The shapes demo's VOC07 mAP in fp32 and under bf16 autocast.

    python -m benchmarks.bf16_accuracy [--checkpoint runs/demo/best.pth] [--json rows.jsonl]

Needs the trained demo (``make demo``: ``runs/demo/*.pth`` and ``data/shapes``); without it the row says
so. Both evaluations go through ``recipes/eval_voc.py``, the second with ``--amp``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.harness import ROOT, emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="default: runs/demo/best.pth, else runs/demo/last.pth")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="accepted for run_all.py; the check is the same")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    candidates = [args.checkpoint] if args.checkpoint else [ROOT / "runs/demo/best.pth", ROOT / "runs/demo/last.pth"]
    checkpoint = next((path for path in candidates if path.is_file()), None)
    row = {"benchmark": f"bf16 accuracy ({args.device})", "case": "shapes demo, VOC07 mAP, autocast vs fp32",
           "target": "within 0.5 point"}
    if checkpoint is None or not (ROOT / "data/shapes").is_dir():
        emit([{**row, "ssd_zoo": "-", "alternative": "skipped: no trained demo (run make demo first)"}], args.json)
        return
    from recipes import eval_voc  # the repository root is on sys.path: python -m from the root

    maps = {}
    with tempfile.TemporaryDirectory() as out:
        for amp in (False, True):
            argv = ["--config", str(ROOT / "recipes/configs/shapes_quick.yaml"), "--weights", str(checkpoint),
                    "--data-root", str(ROOT / "data/shapes"), "--output-dir", out, "--device", args.device]
            maps[amp] = 100 * eval_voc.main(argv + (["--amp"] if amp else []))["map_voc07"]
    gap = maps[True] - maps[False]
    precision = "bf16" if args.device == "cpu" else "fp16"
    emit([{**row, "ssd_zoo": f"{precision}: {maps[True]:.2f} mAP", "alternative": f"fp32: {maps[False]:.2f} mAP",
           "speed-up": f"{gap:+.2f} points", "outputs": "agree" if abs(gap) <= 0.5 else "DIFFER"}], args.json)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
