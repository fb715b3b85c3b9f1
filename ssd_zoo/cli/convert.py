"""``ssd-zoo convert``: a checkpoint from one layout to another (ssd_zoo, torchvision, ssd.pytorch, publishers').

    ssd-zoo convert --from ssd.pytorch ssd300_mAP_77.43_v2.pth ssd300_voc.pth
    ssd-zoo convert --to torchvision --anchors coco my_coco_ssd300.pth for_torchvision.pth
"""
from __future__ import annotations

import argparse
from typing import Any

from ssd_zoo.cli.args import Subparsers
from ssd_zoo.files import read_file, save_atomic
from ssd_zoo.registry import build
from ssd_zoo.weights import convert as layouts
from ssd_zoo.weights.resolve import Checkpoint, checkpoint_from


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert a checkpoint between ssd_zoo, torchvision, ssd.pytorch")
    parser.add_argument("input", help="checkpoint to read (.pth)")
    parser.add_argument("output", help="where to write the converted state dict (.pth)")
    parser.add_argument("--from", dest="source", choices=["auto", *layouts.LAYOUTS], default="auto",
                        help="layout of INPUT (default: detected from its keys)")
    parser.add_argument("--to", dest="target", choices=layouts.LAYOUTS, default="ssd_zoo",
                        help="layout of OUTPUT (default: ssd_zoo)")
    parser.add_argument("--input-order", choices=["rgb", "bgr"], default="rgb",
                        help="channel order the non-ssd_zoo network was trained on (ssd_zoo models take RGB)")
    parser.add_argument("--anchors", choices=["voc", "coco"],
                        help="the default boxes of an ssd_zoo INPUT saved before ssd_zoo 0.2 (newer files record "
                             "theirs); needed for --to torchvision, whose ssd300_vgg16 always uses 'coco'")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Convert ``args.input`` to ``args.output``; the result is checked by loading it into the model it fits."""
    raw = layouts.unwrap(read_file(args.input))
    source = layouts.detect_layout(raw, args.input) if args.source == "auto" else args.source
    checkpoint = checkpoint_from(raw, args.input, args.input_order if source != "ssd_zoo" else "rgb", layout=source)
    state = checkpoint.state_dict
    model = _check_fits_a_model(checkpoint, args.input)
    if args.target == "ssd_zoo":  # the model's own state dict: its record names the builder, boxes and classes
        out = {k: v.contiguous() for k, v in model.state_dict().items()}
    else:  # a model the target's code would decode wrongly (e.g. VOC boxes to torchvision) raises, as from Python
        anchors = layouts.LAYOUT_ANCHORS[source] or args.anchors  # the boxes of a file without ssd_zoo's record
        out = layouts.from_ssd_zoo(state, args.target, args.input_order, anchors=anchors, where=args.input)
    save_atomic(out, args.output)  # onto the input itself too: it is read whole first
    print(f"{args.input} ({source}) -> {args.output} ({args.target}): {len(out)} tensors")
    return 0


def _check_fits_a_model(checkpoint: Checkpoint, where: str) -> Any:
    """The registered model the file fits, built with its weights (:func:`ssd_zoo.registry.load`'s choice), so
    that keys and shapes are checked before anything is written."""
    name, builder_kwargs = checkpoint.architecture()
    return build(name, weights=checkpoint, **builder_kwargs)
