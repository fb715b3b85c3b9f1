"""How well a config's default boxes cover a dataset's objects (docs/demo.md's default-box study), through ssd_zoo.finetune.

    python recipes/anchor_coverage.py --config recipes/configs/shapes_quick.yaml --data-root data/shapes
    python recipes/anchor_coverage.py --config recipes/configs/shapes_quick.yaml --data-root data/shapes \
        --set 'model_kwargs={anchors: coco}' --iou 0.5     # COCO's boxes at the same input, for comparison

Boxes are taken as the model sees them: the training split's annotations (difficult ones as the config keeps
them), padded to squares first where ``pad_to_square`` is set, stretched to the ``S x S`` input (see
:func:`ssd_zoo.finetune.load_boxes`). Prints :meth:`ssd_zoo.finetune.Coverage.table`; ``--json`` writes it too.
``ssd-zoo anchors DATA --config FILE [--fit]`` is the same report from the command line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `recipes` importable

from recipes.common import build_model  # noqa: E402
from recipes.config import load_config, parse_override  # noqa: E402
from ssd_zoo.finetune import Coverage, coverage, load_boxes  # noqa: E402
from ssd_zoo.data.voc import read_class_names  # noqa: E402
from ssd_zoo.files import write_atomic  # noqa: E402


def main(argv: list[str] | None = None) -> Coverage:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, required=True, help="a YAML file in recipes/configs/")
    p.add_argument("--data-root", help="VOCdevkit folder (overrides data_root)")
    p.add_argument("--iou", type=float, help="the matching IoU (default: the model's iou_thresh)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    overrides = dict(parse_override(item) for item in args.set)
    cfg = load_config(args.config, {**overrides, **({"data_root": args.data_root} if args.data_root else {})})
    names = cfg.class_names or read_class_names(cfg.data_root)
    model = build_model(cfg, len(names) + 1)
    truth = load_boxes(cfg.data_root, model.input_size, splits=cfg.train_splits, keep_difficult=cfg.keep_difficult,
                       pad_to_square=cfg.pad_to_square, class_names=names)
    report = coverage(model, truth, iou_thresh=args.iou)
    print(report.table())
    if args.json:
        write_atomic(args.json, lambda f: f.write(json.dumps(report.to_dict(), indent=1).encode()))
    return report


if __name__ == "__main__":
    main()
