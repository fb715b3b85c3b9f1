"""The ``ssd-zoo`` command: one module per subcommand, each parsing its options and calling the library.

    ssd-zoo list                   list_models.py   the registered models and their published weights
    ssd-zoo detect PATHS...        detect.py        images, folders, videos, streams -> pictures, videos, JSON
    ssd-zoo convert IN OUT         convert.py       a checkpoint between layouts
    ssd-zoo export MODEL OUT       export.py        ONNX / OpenVINO IR with decoding and NMS inside
    ssd-zoo anchors DATA           anchors.py       default-box coverage of a dataset, and a fit
    ssd-zoo data convert SRC OUT   data.py          a dataset between VOC, COCO and YOLO (data_convert.py)
    ssd-zoo data-check DATA        data_check.py    counts per class, box sizes, every problem with its file
    ssd-zoo train DATA --from W    train.py         a detector trained on DATA from weights W (ssd_zoo.train)

A subcommand module has ``add(subparsers)`` (its parser, with ``set_defaults(run=run)``) and ``run(args) ->
exit code``; list it in :data:`SUBCOMMANDS`. A user's error is one line on stderr, exit code 2
(:mod:`ssd_zoo.errors`).
"""
from __future__ import annotations

import argparse
from types import ModuleType

from ssd_zoo.cli import anchors, convert, data, data_check, detect, export, list_models, train
from ssd_zoo.cli.args import check_arguments
from ssd_zoo.errors import add_debug_flag, run_main

SUBCOMMANDS: list[ModuleType] = [list_models, detect, convert, export, anchors, data, data_check, train]


def _run(args: argparse.Namespace) -> int:
    check_arguments(args)
    return args.run(args)


def main(argv: list[str] | None = None) -> int:
    """``ssd-zoo`` with ``argv`` (``sys.argv[1:]`` when None); returns the exit code."""
    parser = argparse.ArgumentParser(prog="ssd-zoo", description="SSD model zoo: list, detect, convert, export.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for subcommand in SUBCOMMANDS:
        subcommand.add(subparsers)
    for subparser in subparsers.choices.values():  # `ssd-zoo detect ... --debug`, wherever it is typed
        add_debug_flag(subparser)
    args = parser.parse_args(argv)
    return run_main(lambda _: _run(args), f"ssd-zoo {args.command}", argv)
