"""``ssd-zoo anchors``: how well a model's default boxes cover a dataset's objects; ``--fit``: better ones.

    ssd-zoo anchors data/shapes --config recipes/configs/shapes_quick.yaml --fit --png anchors.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ssd_zoo import finetune as anchors
from ssd_zoo.cli.args import Subparsers, build_from_args
from ssd_zoo.files import write_atomic
from ssd_zoo.registry import build


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("anchors", help="how well a model's default boxes cover a dataset; --fit: better ones")
    parser.add_argument("data", help="a VOCdevkit folder or a COCO .json annotation file")
    parser.add_argument("--model", help="registered model name (default: the --config's, or what a --weights file records)")
    parser.add_argument("--model-kwargs", default="{}", help="builder keywords, a YAML mapping: '{backbone: resnet18, "
                        "input_size: 128, box_sizes: [...]}' (over the config's model_kwargs)")
    parser.add_argument("--config", type=Path, help="a recipe config (YAML): its model, backbone, input_size, model_kwargs "
                        "and train_splits, keep_difficult, pad_to_square, class_names")
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


def _anchors_setup(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config values, builder keywords)`` from ``--config`` and ``--model-kwargs``; sets ``args.model``."""
    import yaml

    config = yaml.safe_load(args.config.read_text()) if args.config else {}
    given = yaml.safe_load(args.model_kwargs)
    if not isinstance(config, dict) or not isinstance(given, dict):
        raise ValueError(f"expected YAML mappings in --config and --model-kwargs, found {type(config).__name__} and "
                         f"{type(given).__name__}")
    kwargs = {**(config.get("model_kwargs") or {}), **given}
    if config.get("backbone"):
        kwargs.setdefault("backbone", config["backbone"])
    args.model = args.model or config.get("model") or ("ssd300_vgg16" if args.config else None)
    if args.model == "ssd" and config.get("input_size"):
        kwargs.setdefault("input_size", config["input_size"])
    if args.model is None and args.weights.lower() == "none":
        raise ValueError("expected --model NAME, --config FILE or --weights CHECKPOINT, found none of them")
    return config, kwargs


def run(args: argparse.Namespace) -> int:
    config, kwargs = _anchors_setup(args)
    model, name, _ = build_from_args(args, **kwargs)
    pick = lambda flag, key, default: flag if flag is not None else config.get(key, default)  # noqa: E731
    truth = anchors.load_boxes(args.data, model.input_size, splits=pick(args.splits, "train_splits", "2007-trainval"),
                               keep_difficult=bool(pick(args.keep_difficult, "keep_difficult", False)),
                               pad_to_square=bool(pick(args.pad_to_square, "pad_to_square", False)),
                               class_names=config.get("class_names"))
    print(f"{name}: {len(truth.boxes)} ground-truth boxes in {truth.images} images of {truth.source}, "
          f"at the {model.input_size}x{model.input_size} input")
    report = anchors.coverage(model, truth, iou_thresh=args.iou)
    print(report.table())
    reports, titles, out = [report], ["the model's default boxes"], {"before": report.to_dict()}
    if args.fit:
        result = anchors.fit(model, truth, iou_thresh=args.iou)
        print("\nfitted default boxes:\n" + result.after.table() + "\n" + result.summary())
        fitted = {k: v for k, v in kwargs.items() if k not in ("backbone", "input_size")}
        print("for the recipe config:\n" + result.yaml(fitted))
        try:  # the snippet must build the fitted boxes
            built = build(name, **{**kwargs, **result.model_kwargs()}).default_boxes.spec
            if built.describe() != result.spec.describe():  # describe(): to 6 digits, as the snippet rounds
                print(f"note: {name} builds {built.describe()} from these keywords, not the fitted boxes")
        except (TypeError, ValueError) as error:
            print(f"note: {name}'s builder does not take these keywords ({error}); use the boxes with a model that does")
        reports.append(result.after)
        titles.append("fitted")
        out.update(after=result.after.to_dict(), model_kwargs=result.model_kwargs())
    if args.png:
        anchors.draw_coverage(args.png, reports, truth.boxes, titles)
        print(f"-> {args.png}")
    if args.json:
        write_atomic(args.json, lambda f: f.write(json.dumps(out, indent=1).encode()))
    return 0
