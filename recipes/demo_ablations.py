"""The demo's ablations: `make demo`'s config with one choice changed at a time, trained and evaluated the same way.

    python recipes/demo_ablations.py --data-root data/shapes                  # every variant, one after another
    python recipes/demo_ablations.py --data-root data/shapes --only coco_boxes seed_1

Each variant is ``recipes/configs/shapes_quick.yaml`` plus the ``--set`` overrides below, run by
``recipes/train_voc.py`` into ``runs/ablations/<name>/``; the VOC07/VOC2010+ mAPs on the same 300 test images go
to ``runs/ablations/results.jsonl`` (one line a run, appended) and a markdown table is printed. ``seed_1`` is
the demo with another seed: the difference it makes is the noise of one seed, against which the others read.
A run takes as long as the demo's training (about 11 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `recipes` importable

from recipes import train_voc  # noqa: E402

CONFIG = Path(__file__).resolve().parent / "configs" / "shapes_quick.yaml"
# The demo's model keywords but for the default boxes: COCO's scaled to the 128 input, matched at IoU 0.5.
COCO_BOXES = ("model_kwargs={anchors: coco, iou_thresh: 0.5, extra_channels: [128, 128, 128], "
              "timm_kwargs: {channels: [16, 48, 64, 128], stem_width: 16}}")
# The demo's model with a plain 1/4-width stride-8 stage (32 channels instead of 48).
NARROW = ("model_kwargs={anchors: coco, box_sizes: [14, 34, 52, 84.2, 109.3, 134.4], aspect_ratios: [[2, 3], [2, 3], "
          "[2, 3], [2, 3], [2]], iou_thresh: 0.4, extra_channels: [128, 128, 128], "
          "timm_kwargs: {channels: [16, 32, 64, 128], stem_width: 16}}")
VARIANTS: dict[str, tuple[list[str], str]] = {  # name -> (--set overrides, what changes)
    "demo": ([], "the demo as configured"),
    "seed_1": (["seed=1"], "the demo with seed 1: one seed's noise"),
    "coco_boxes": ([COCO_BOXES], "COCO's default boxes (9-134 px at the input), matched at IoU 0.5"),
    "narrow_stride8": ([NARROW], "a plain 1/4-width stride-8 stage (32 channels, not 48)"),
    "train_1500": (["train_splits=2007-trainval1500"], "1500 training images (the first of the 20000), seen ~53 times"),
}


def subset_split(root: Path, name: str, count: int) -> None:
    """``ImageSets/Main/<name>.txt``: the first ``count`` ids of ``trainval.txt`` (same images, fewer)."""
    folder = root / "VOC2007" / "ImageSets" / "Main"
    ids = (folder / "trainval.txt").read_text().split()
    if len(ids) < count:
        raise SystemExit(f"demo_ablations: {folder / 'trainval.txt'} lists {len(ids)} images, fewer than {count}")
    (folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids[:count]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default="data/shapes", help="the demo's data (make demo writes data/shapes)")
    p.add_argument("--output-dir", type=Path, default=Path("runs/ablations"))
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), help="these variants only")
    args = p.parse_args(argv)
    subset_split(Path(args.data_root), "trainval1500", 1500)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    results = args.output_dir / "results.jsonl"
    for name in args.only or list(VARIANTS):
        sets, what = VARIANTS[name]
        start = time.perf_counter()
        result = train_voc.train(["--config", str(CONFIG), "--data-root", args.data_root, "--output-dir",
                                  str(args.output_dir / name), *(a for s in sets for a in ("--set", s))])
        row = {"variant": name, "change": what, "map_voc07": result.metrics["map_voc07"],
               "map_voc12": result.metrics["map_voc12"], "minutes": round((time.perf_counter() - start) / 60, 1),
               "sets": sets}
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    print("| variant | change | VOC07 mAP | VOC2010+ mAP |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['change']} | {row['map_voc07']:.3f} | {row['map_voc12']:.3f} |")


if __name__ == "__main__":
    main()
