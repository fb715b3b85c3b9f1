"""``ssd-zoo data convert``: a dataset from one format to another (VOC folder, COCO JSON, YOLO data.yaml).

    ssd-zoo data convert data/shapes shapes_yolo --to yolo
    ssd-zoo data convert my_yolo/data.yaml my_coco --to coco

Every split is converted and the images copied; OUT must be new (or an empty folder): nothing is overwritten.
See :mod:`ssd_zoo.data.writers` for each format's layout and what does not carry over.
"""
from __future__ import annotations

import argparse

from ssd_zoo.cli.args import Subparsers
from ssd_zoo.data.formats import convert, list_splits
from ssd_zoo.data.records import FORMATS, detect_format


def add_to(subparsers: Subparsers) -> None:
    """``convert`` under ``ssd-zoo data``."""
    parser = subparsers.add_parser("convert", help="convert a dataset between VOC, COCO and YOLO",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a YOLO data.yaml (or its folder), a COCO .json (or a folder of them), or a "
                        "VOCdevkit folder")
    parser.add_argument("out", help="the new dataset's folder")
    parser.add_argument("--to", required=True, choices=FORMATS, help="the format to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    source_format = detect_format(args.source)
    out = convert(args.source, args.out, args.to)
    print(f"{args.source} ({source_format}) -> {out} ({args.to}): splits {', '.join(list_splits(out))}; "
          f"check it with: ssd-zoo data-check {out}")
    return 0
