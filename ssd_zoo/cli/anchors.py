"""``ssd-zoo anchors``: how well a model's default boxes cover a dataset's objects; ``--fit``: better ones.

    ssd-zoo anchors data/shapes --config recipes/configs/shapes_quick.yaml --fit --png anchors.png

With ``--config`` the model is the training config's (:func:`ssd_zoo.train.model.build_model`, the one
config-to-model rule), so the report is the one training prints when it starts.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ssd_zoo.cli.args import Subparsers, build_from_args
from ssd_zoo.detect.results import write_report
from ssd_zoo.finetune.coverage_plot import draw_coverage
from ssd_zoo.finetune.coverage_report import coverage_report
from ssd_zoo.train.config import TrainConfig, load_config
from ssd_zoo.train.model import build_model


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("anchors", help="how well a model's default boxes cover a dataset; --fit: better ones")
    parser.add_argument("data", help="a VOCdevkit folder or a COCO .json annotation file")
    parser.add_argument("--model", help="registered model name (default: the --config's, or what a --weights file records)")
    parser.add_argument("--model-kwargs", default="{}", help="builder keywords, a YAML mapping: '{backbone: resnet18, "
                        "input_size: 128, box_sizes: [...]}' (over the config's model_kwargs)")
    parser.add_argument("--config", type=Path, help="a training config (YAML): its model, backbone, input_size, "
                        "model_kwargs and train_splits, keep_difficult, pad_to_square, class_names")
    parser.add_argument("--weights", default="none", help="a checkpoint (its recorded default boxes) or weights name")
    parser.add_argument("--splits", help="VOC image sets, e.g. 2007-trainval+2012-trainval (default: the config's "
                        "train_splits, else 2007-trainval)")
    parser.add_argument("--iou", type=float, help="the matching IoU (default: the model's iou_thresh)")
    parser.add_argument("--pad-to-square", action="store_true", default=None, help="images padded to squares first")
    parser.add_argument("--keep-difficult", action="store_true", default=None, help="count boxes marked difficult")
    parser.add_argument("--fit", action="store_true", help="propose box_sizes and aspect_ratios that cover better")
    parser.add_argument("--png", type=Path, help="draw the boxes' width/height scatter with the default boxes here")
    parser.add_argument("--json", type=Path, help="also write the report(s) here")
    parser.set_defaults(run=run)


def _config(args: argparse.Namespace, given: dict[str, Any]) -> TrainConfig:
    """``--config`` with ``--model`` and ``--model-kwargs`` over its model and model_kwargs."""
    cfg = load_config(args.config, {"model": args.model} if args.model else {})
    return dataclasses.replace(cfg, model_kwargs={**cfg.model_kwargs, **given})


def _model(args: argparse.Namespace) -> tuple[nn.Module, str, TrainConfig | None, dict[str, Any]]:
    """``(model, its name, the config or None, the model_kwargs)`` from ``--config`` or ``--model``/``--weights``."""
    given = yaml.safe_load(args.model_kwargs)
    if not isinstance(given, dict):
        raise ValueError(f"--model-kwargs: expected a YAML mapping, found {type(given).__name__}")
    weights = None if args.weights.lower() == "none" else args.weights
    if args.config is not None:
        cfg = _config(args, given)
        return build_model(cfg, None, cfg.class_names, init_weights=weights), cfg.model, cfg, cfg.model_kwargs
    if args.model is None and weights is None:
        raise ValueError("expected --model NAME, --config FILE or --weights CHECKPOINT, found none of them")
    model, name, _ = build_from_args(args, **given)
    return model, name, None, given


def run(args: argparse.Namespace) -> int:
    model, name, cfg, model_kwargs = _model(args)
    pick = lambda flag, key, default: flag if flag is not None else (getattr(cfg, key) if cfg else default)  # noqa: E731
    report = coverage_report(
        model, args.data, splits=pick(args.splits, "train_splits", "2007-trainval"),
        keep_difficult=pick(args.keep_difficult, "keep_difficult", False),
        pad_to_square=pick(args.pad_to_square, "pad_to_square", False), class_names=cfg.class_names if cfg else None,
        iou_thresh=args.iou, fit_boxes=args.fit,
        snippet_kwargs={k: v for k, v in model_kwargs.items() if k not in ("backbone", "input_size")})
    print(report.headline(name))
    print(report.text())
    if args.png:
        reports = [report.before] + ([report.fitted.after] if report.fitted else [])
        draw_coverage(args.png, reports, report.truth.boxes, ["the model's default boxes", "fitted"][:len(reports)])
        print(f"-> {args.png}")
    if args.json:
        write_report(args.json, report.to_dict())
    return 0
