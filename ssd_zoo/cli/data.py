"""``ssd-zoo data``: dataset tools, one module each.

    ssd-zoo data convert SOURCE OUT --to yolo    data_convert.py   VOC, COCO, YOLO into one another
    ssd-zoo data check DATA                      data_check.py     the same as ``ssd-zoo data-check DATA``
"""
from __future__ import annotations

from ssd_zoo.cli import data_check, data_convert
from ssd_zoo.cli.args import Subparsers
from ssd_zoo.errors import add_debug_flag


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("data", help="dataset tools: convert between VOC, COCO and YOLO; check")
    tools = parser.add_subparsers(dest="data_command", required=True)
    data_convert.add_to(tools)
    data_check.arguments(tools.add_parser("check", help=data_check.HELP))
    for tool in tools.choices.values():  # `ssd-zoo data convert ... --debug`
        add_debug_flag(tool)
