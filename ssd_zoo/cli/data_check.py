"""``ssd-zoo data-check``: what a dataset holds and every problem in it, one line each, before training.

    ssd-zoo data-check data/shapes --input-size 300
    ssd-zoo data-check my_yolo/data.yaml --json report.json

Exit code 0 when no problem is found, 1 when some are (so a script can stop before training), 2 when DATA is
no dataset at all (nothing there, a malformed data.yaml): see :func:`ssd_zoo.data.check.check_dataset`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssd_zoo.cli.args import Subparsers
from ssd_zoo.data.check import check_dataset
from ssd_zoo.files import write_atomic

HELP = "check a VOC, COCO or YOLO dataset: counts per class, box sizes, bad labels, unreadable or duplicate images"


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``data-check`` (also ``data check``)."""
    parser.add_argument("data", help="a YOLO data.yaml (or its folder), a COCO .json (or a folder of them), or a "
                        "VOCdevkit folder")
    parser.add_argument("--input-size", type=int, default=300, help="the model's input side in pixels, at which box "
                        "sizes are counted as small, medium, large (300)")
    parser.add_argument("--pad-to-square", action="store_true", help="images are padded to squares before resizing")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.set_defaults(run=run)


def add(subparsers: Subparsers) -> None:
    arguments(subparsers.add_parser("data-check", help=HELP, description=__doc__.split("\n\n")[0]))


def run(args: argparse.Namespace) -> int:
    if args.input_size < 1:
        raise ValueError(f"--input-size: expected a positive number of pixels, found {args.input_size}")
    report = check_dataset(args.data, args.input_size, pad_to_square=args.pad_to_square)
    print(report)
    if args.json:
        write_atomic(args.json, lambda f: f.write(json.dumps(report.to_dict(), indent=1).encode()))
        print(f"-> {args.json}")
    return 0 if report.ok else 1
