"""``ssd-zoo detect``: detect objects in images, folders, videos and streams (:mod:`ssd_zoo.detect.sources`).

    ssd-zoo detect photo.jpg photos/ --model ssd300_vgg16 --weights VOC0712 --score 0.5 --out detections/
    ssd-zoo detect clip.mp4 --weights runs/demo/best.pth --track --every 2       # annotated clip.mp4 + clip.jsonl
    ssd-zoo detect aerial.tif --weights runs/demo/best.pth --tile 300 --overlap 0.25
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ssd_zoo.cli.args import Subparsers, build_from_args
from ssd_zoo.detect.sources import detect_sources, split_sources
from ssd_zoo.weights.published import COCO_CATEGORIES, VOC_CATEGORIES

SKIPPED_EXIT = 3  # everything readable was detected and written, but some inputs were skipped


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("detect", help="detect objects in images, folders and videos; write pictures, "
                                   "annotated videos and JSON")
    parser.add_argument("images", nargs="+", help="image files, video files (any container/codec FFmpeg reads), "
                        "stream URLs (rtsp://..., /dev/video0), or folders of images and videos (searched recursively)")
    parser.add_argument("--model", help="registered model name (default: the one a checkpoint file records, else "
                        "ssd300_vgg16)")
    parser.add_argument("--weights", default="DEFAULT", help="weights name (e.g. VOC0712), or a checkpoint path")
    parser.add_argument("--score", type=float, default=0.5, help="keep detections scoring above this (default 0.5)")
    parser.add_argument("--out", type=Path, default=Path("detections"), help="output folder (default: detections)")
    parser.add_argument("--categories", help="class names: 'voc', 'coco', or a text file with one name per line, "
                        "background first (default: the weights' own names)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=4, help="images, frames or tiles per forward pass (4)")
    parser.add_argument("--resize", choices=["stretch", "letterbox"], help="how images reach the square input: "
                        "stretched, or letterboxed to keep the aspect ratio (default: the weights' own, else stretch)")
    parser.add_argument("--tile", type=int, metavar="SIZE", help="sliced inference for large images: detect in "
                        "SIZE x SIZE windows (and the whole image, downscaled), merged with per-class NMS")
    parser.add_argument("--overlap", type=float, default=0.25, help="fraction of a tile shared with its neighbour "
                        "(default 0.25)")
    parser.add_argument("--no-whole", dest="whole", action="store_false", help="with --tile: skip the whole-image pass")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="videos: detect every N-th frame (default 1)")
    parser.add_argument("--track", action="store_true", help="videos: give detections track ids that persist across "
                        "frames (ByteTrack; pip install 'ssd_zoo[track]')")
    parser.add_argument("--backend", choices=["torch", "onnxruntime", "openvino"], default="torch",
                        help="run the model in PyTorch (default), or an exported --model-file in onnxruntime/OpenVINO")
    parser.add_argument("--model-file", help="the file to run: a checkpoint (torch; as --weights) or one written by "
                        "ssd-zoo export (.onnx, .xml), which records its model, classes and input size")
    parser.set_defaults(run=run)


def _categories(choice: str | None, model: Any) -> list[str]:
    """Names for labels ``0 .. num_classes-1``: the ``--categories`` choice, the model's own, else numbers."""
    num_classes = model.num_classes
    if choice in ("voc", "coco"):
        names = VOC_CATEGORIES if choice == "voc" else COCO_CATEGORIES
    elif choice is not None:
        names = [line.strip() for line in Path(choice).read_text().splitlines() if line.strip()]
    else:
        # an SSD's class_names, or a deployed file's runner's categories (ssd_zoo.deploy.runtime)
        names = getattr(model, "class_names", None) or getattr(model, "categories", None) \
            or [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise SystemExit(f"ssd-zoo detect: the model has {num_classes} classes, but {choice} names {len(names)}")
    return list(names)


def load_detector(args: argparse.Namespace) -> tuple[Any, str, str, list[str]]:
    """``(model-like callable, model name, weights as text, class names)`` for the detect options: a checkpoint
    in PyTorch, or an exported file (``--backend onnxruntime|openvino --model-file F``) in its runtime
    (:func:`ssd_zoo.deploy.runtime.load_runner`), checked against ``--model`` when given."""
    if args.backend == "torch":
        if args.model_file is not None:
            args.weights = args.model_file
        model, name, weights = build_from_args(args, score_thresh=args.score,
                                               **({"resize": args.resize} if args.resize else {}))
        model = model.eval().to(args.device)
        return model, name, weights, _categories(args.categories, model)
    from ssd_zoo.deploy.runtime import load_runner

    if args.model_file is None:
        raise SystemExit(f"ssd-zoo detect: --backend {args.backend} runs an exported file; pass --model-file F "
                         "(written by ssd-zoo export)")
    runner = load_runner(args.model_file, args.backend, score_thresh=args.score)
    if args.model is not None and runner.model_name != args.model:
        raise SystemExit(f"ssd-zoo detect: {args.model_file} holds model {runner.model_name!r}, not --model {args.model!r}")
    return runner, runner.model_name or "unknown", str(args.model_file), _categories(args.categories, runner)


def run(args: argparse.Namespace) -> int:
    """Detect in every input (:func:`~ssd_zoo.detect.sources.detect_sources`); exit code 3 where some were skipped."""
    sources = split_sources(args.images)  # before the model: a missing path fails at once
    model, name, weights, names = load_detector(args)
    report = detect_sources(model, sources, args.out, names, batch_size=args.batch_size, tile=args.tile,
                            overlap=args.overlap, whole=args.whole, every=args.every, track=args.track,
                            device=args.device, report={"model": name, "weights": weights, "score_thresh": args.score})
    count = sum(len(r["detections"]) for r in report["images"])
    print(f"{len(report['images'])} images, {count} detections, {len(report['videos'])} videos -> {args.out}")
    if report["skipped"]:
        print(f"ssd-zoo detect: skipped {len(report['skipped'])} file(s), listed in {args.out / 'detections.json'}",
              file=sys.stderr)
        return SKIPPED_EXIT
    return 0
