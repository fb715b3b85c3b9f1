"""``ssd-zoo convert``: a checkpoint from one layout to another (ssd_zoo, torchvision, ssd.pytorch, publishers').

    ssd-zoo convert --from ssd.pytorch ssd300_mAP_77.43_v2.pth ssd300_voc.pth
    ssd-zoo convert --to torchvision --anchors coco my_coco_ssd300.pth for_torchvision.pth
"""
from __future__ import annotations

import argparse
from typing import Any

from torch import Tensor

from ssd_zoo.cli.args import Subparsers
from ssd_zoo.files import read_file, save_atomic
from ssd_zoo.models.record import split_record
from ssd_zoo.ops.default_boxes import DefaultBoxSpec, preset
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


# torchvision's ssd300_vgg16 builds its own default boxes, the ones ssd_zoo calls anchors="coco" (at 300 px).
TORCHVISION_ANCHORS = "coco"


def _check_torchvision_can_use(state: dict[str, Tensor], anchors: str | None, where: str) -> None:
    """Refuse a conversion to torchvision that torchvision would decode against other default boxes.

    The model's boxes: its ssd_zoo record, else ``anchors`` (implied by the input layout, or ``--anchors``).
    """
    levels = layouts.num_levels(state)
    if levels != 6:
        raise SystemExit(f"ssd-zoo convert: {where} has {levels} head levels; torchvision's ssd300_vgg16 has 6 (SSD300)")
    theirs = preset(300, TORCHVISION_ANCHORS)
    record = split_record(state)[1]
    if record is not None:
        ours = DefaultBoxSpec.from_dict(record["default_boxes"])
    elif anchors is not None:
        ours = preset(300, anchors)
    else:
        raise SystemExit(f"ssd-zoo convert: {where} does not say which default boxes it was trained with; torchvision's "
                         f"ssd300_vgg16 uses anchors='coco' ({theirs.describe()}). Pass --anchors coco if that is the "
                         "model's, else keep it in ssd_zoo's layout")
    if ours != theirs:
        raise SystemExit(
            f"ssd-zoo convert: {where} was trained with default boxes {ours.describe()}, but torchvision's ssd300_vgg16 "
            f"decodes with its own anchors='coco' ({theirs.describe()}): every detection would be decoded against the "
            "wrong boxes. Use the model with ssd_zoo (ssd_zoo.build('ssd300_vgg16', weights=FILE)) instead")


def run(args: argparse.Namespace) -> int:
    """Convert ``args.input`` to ``args.output``; the result is checked by loading it into the model it fits."""
    raw = layouts.unwrap(read_file(args.input))
    source = layouts.detect_layout(raw, args.input) if args.source == "auto" else args.source
    checkpoint = checkpoint_from(raw, args.input, args.input_order if source != "ssd_zoo" else "rgb", layout=source)
    state = checkpoint.state_dict
    model = _check_fits_a_model(checkpoint, args.input)
    if args.target == "torchvision":
        _check_torchvision_can_use(state, layouts.LAYOUT_ANCHORS[source] or args.anchors, args.input)
    if args.target == "ssd_zoo":  # the model's own state dict: its record names the builder, boxes and classes
        out = {k: v.contiguous() for k, v in model.state_dict().items()}
    else:
        out = layouts.from_ssd_zoo(state, args.target, args.input_order)
    save_atomic(out, args.output)  # onto the input itself too: it is read whole first
    print(f"{args.input} ({source}) -> {args.output} ({args.target}): {len(out)} tensors")
    return 0


def _check_fits_a_model(checkpoint: Checkpoint, where: str) -> Any:
    """The registered model the file fits, built with its weights (:func:`ssd_zoo.registry.load`'s choice), so
    that keys and shapes are checked before anything is written."""
    name, builder_kwargs = checkpoint.architecture()
    return build(name, weights=checkpoint, **builder_kwargs)
