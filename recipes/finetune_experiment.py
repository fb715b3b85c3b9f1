"""The fine-tuning experiment of docs/finetuning.md: the demo's model fine-tuned on new classes against the same run from scratch.

    python recipes/finetune_experiment.py                       # every run below, then the table
    python recipes/finetune_experiment.py --runs scratch,finetune

Writes the new dataset once (400 training and 200 test images of circle, ring, diamond, star, hexagon; see
``recipes/configs/shapes_finetune.yaml``), then trains each run of :data:`RUNS` with that config (60 steps of
8 images) into ``runs/finetune_exp/<run>/`` and prints VOC07 mAP and wall time per run. Only ``init_weights``,
``freeze`` and (for ``scratch_5x_steps``) ``max_iters`` differ between runs. Times are wall-clock on whatever
else the machine is doing: compare runs made side by side, not across machines.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `recipes` importable

from recipes import train_voc  # noqa: E402
from ssd_zoo.data.shapes import generate_shapes_voc  # noqa: E402

CONFIG = Path(__file__).resolve().parent / "configs" / "shapes_finetune.yaml"
CLASSES = ("circle", "ring", "diamond", "star", "hexagon")
# run name -> config overrides (init_weights: the config's, the demo's best.pth, unless null)
RUNS: dict[str, list[str]] = {
    "scratch": ["init_weights=null"],
    "finetune": [],
    "finetune_freeze_backbone": ["freeze=backbone"],
    "scratch_5x_steps": ["init_weights=null", "max_iters=300"],  # does more training make up for the start?
}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {','.join(RUNS)}")
    p.add_argument("--data-root", default="data/shapes_new", help="where the new dataset is (written if missing)")
    p.add_argument("--init-weights", default="runs/demo/best.pth", help="the model to fine-tune (make demo)")
    p.add_argument("--out", default="runs/finetune_exp", help="one folder per run in here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    args = p.parse_args(argv)
    root = Path(args.data_root)
    if not (root / "classes.txt").is_file():
        generate_shapes_voc(root, 400, 200, seed=1, sides=(128, 160), classes=CLASSES)
    results = {}
    for name in args.runs.split(","):
        overrides = [f"init_weights={args.init_weights}", "data_root=" + str(root), *RUNS[name], *args.set]
        argv_run = ["--config", str(CONFIG), "--output-dir", f"{args.out}/{name}",
                    *(arg for item in overrides for arg in ("--set", item))]
        start = time.perf_counter()
        result = train_voc.train(argv_run)
        seconds = time.perf_counter() - start
        results[name] = {"map_voc07": result.metrics["map_voc07"], "seconds": seconds, "iterations": result.iteration}
        Path(args.out, name, "experiment.json").write_text(json.dumps(results[name], indent=1))
    print(f"\n{'run':<28}{'VOC07 mAP':>10}{'steps':>7}{'minutes':>9}")
    for name, row in results.items():
        print(f"{name:<28}{row['map_voc07']:>10.3f}{row['iterations']:>7}{row['seconds'] / 60:>9.1f}")
    return results


if __name__ == "__main__":
    main()
