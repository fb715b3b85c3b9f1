"""The ``ssd-zoo`` command line: list models and weights, detect objects in images, convert checkpoints.

    ssd-zoo list
    ssd-zoo detect photo.jpg photos/ --model ssd300_vgg16 --weights VOC0712 --score 0.5 --out detections/
    ssd-zoo detect clip.mp4 --weights runs/demo/best.pth --track --every 2       # annotated clip.mp4 + clip.jsonl
    ssd-zoo detect aerial.tif --weights runs/demo/best.pth --tile 300 --overlap 0.25
    ssd-zoo convert --from ssd.pytorch ssd300_mAP_77.43_v2.pth ssd300_voc.pth
    ssd-zoo convert --to torchvision --anchors coco my_coco_ssd300.pth for_torchvision.pth
    ssd-zoo export ssd300_vgg16 --weights VOC0712 ssd300_vgg16.onnx
    ssd-zoo anchors data/shapes --config recipes/configs/shapes_quick.yaml --fit --png anchors.png

Adding a subcommand: write ``add_<name>(subparsers)`` that calls ``subparsers.add_parser(...)``, adds its
arguments and ``set_defaults(run=<function(args) -> exit code>)``, and append it to :data:`SUBCOMMANDS`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from ssd_zoo.weights import convert
from ssd_zoo.errors import add_debug_flag, run_main
from ssd_zoo.files import read_file, save_atomic, write_atomic
from ssd_zoo.registry import build, get_builder, list_models, load
from ssd_zoo.weights.published import COCO_CATEGORIES, VOC_CATEGORIES, get_model_weights, get_weights, list_weights
from ssd_zoo.weights.resolve import Checkpoint, checkpoint_from, read_weights, resolve_weights

Subparsers = Any  # argparse's _SubParsersAction, private in the standard library
SKIPPED_EXIT = 3  # ssd-zoo detect: everything readable was detected and written, but some inputs were skipped


def add_list(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("list", help="registered models and their weights, with published metrics")
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern on model names (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print each file's URL and metric source")
    parser.set_defaults(run=run_list)


def _metric_text(metrics: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{bench} {name} {value}" for bench, values in metrics.items() for name, value in values.items())


def run_list(args: argparse.Namespace) -> int:
    rows = [("model", "weights", "dataset", "published metric", "layout")]
    details = []
    for model in list_models(args.pattern):
        names = list_weights(model)
        if not names:
            rows.append((model, "-", "", "", ""))
        for name in names:
            weights = get_weights(name)
            default = " (DEFAULT)" if get_model_weights(model).__members__.get("DEFAULT") is weights else ""
            meta = weights.meta
            rows.append((model, weights.name + default, meta.get("dataset", ""), _metric_text(meta.get("metrics", {})),
                         meta.get("layout", "")))
            details.append(f"  {name}: {weights.url}  (metric: {meta.get('metrics_source', '-')})")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    backbones = list_weights("vgg16_backbone")
    print(f"\nbackbone initialisation (ssd_zoo.weights.resolve.load_vgg16_backbone): {', '.join(backbones)}")
    if args.verbose:
        print("\n" + "\n".join(details))
    return 0


def add_detect(subparsers: Subparsers) -> None:
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
    parser.set_defaults(run=run_detect)


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


DEFAULT_MODEL = "ssd300_vgg16"


def build_from_args(args: argparse.Namespace, **kwargs: Any) -> tuple[Any, str, str]:
    """``(model, model name, weights as text)`` for ``--model`` and ``--weights``. Without ``--model``, a checkpoint
    file or URL becomes the model it fits (:func:`ssd_zoo.registry.load`: the builder an ssd_zoo file records, the
    recipes' too, or the model its layout names); otherwise the model is ``ssd300_vgg16``. The file is read once."""
    if args.model is not None:
        get_builder(args.model)  # a misspelt --model: "unknown model ..., did you mean ...", before any weights
    given = None if args.weights.lower() == "none" else args.weights
    weights = resolve_weights(given, args.model or DEFAULT_MODEL)
    if args.model is None and isinstance(weights, (str, Path)):  # a file or a URL: it says what it is
        model = load(weights, **kwargs)
        return model, (model.builder or {}).get("name", type(model).__name__), str(weights)
    name, builder_kwargs = args.model or DEFAULT_MODEL, {}
    if isinstance(weights, (str, Path)):  # --model and a file: the file must hold that model (or not say)
        weights = read_weights(weights)
        saved = (weights.record or {}).get("builder")
        if saved is not None and saved["name"] != name:
            raise SystemExit(f"ssd-zoo {args.command}: {weights.source} holds model {saved['name']!r}, not "
                             f"{name!r}; pass --model {saved['name']} (or leave it out)")
        if saved is not None:
            builder_kwargs = saved["kwargs"]
    try:
        model = build(name, weights=weights, **{**builder_kwargs, **kwargs})
    except TypeError as error:  # a builder that needs keywords the command line does not have (backbone=...)
        raise SystemExit(f"ssd-zoo {args.command}: model {name!r} cannot be built from the command line ({error}); "
                         "pass a checkpoint saved by ssd_zoo.build (it records its builder) without --model, or "
                         "build it in Python") from None
    return model, name, weights.name if isinstance(weights, Checkpoint) else str(weights)


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


def _is_stream(item: str) -> bool:
    return "://" in item or item.startswith("/dev/video")


def _inputs(items: list[str]) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]], list[str]]:
    """``(images, videos, streams)``: ``(path, relative name)`` pairs for files, URLs/devices as given."""
    from ssd_zoo.detect.predict import IMAGE_SUFFIXES, find_images
    from ssd_zoo.detect.video import VIDEO_SUFFIXES

    streams = [item for item in items if _is_stream(item)]
    found = find_images([item for item in items if not _is_stream(item)], IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    videos = [(p, n) for p, n in found if p.suffix.lower() in VIDEO_SUFFIXES]
    images = [(p, n) for p, n in found if p.suffix.lower() not in VIDEO_SUFFIXES]
    if not (images or videos or streams):
        raise SystemExit(f"ssd-zoo detect: no images or videos in {items}")
    return images, videos, streams


def run_detect(args: argparse.Namespace) -> int:
    """Detect in every input; nothing done is lost: an unreadable file is reported and skipped (exit code 3),
    ``detections.json`` is written (atomically) whatever happens after the model is loaded."""
    from tqdm import tqdm

    from ssd_zoo.detect import predict
    from ssd_zoo.detect import results

    images, videos, streams = _inputs(args.images)  # before the model: a missing path fails at once
    model, name, weights, names = load_detector(args)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"model": name, "weights": weights, "score_thresh": args.score,
                              "box_format": "xyxy, pixels of the original image", "images": [], "videos": [],
                              "skipped": []}
    pictures = dict(zip([p for p, _ in images], predict.output_names([n for _, n in images], ".jpg")))
    try:
        found = predict.files(model, [p for p, _ in images], args.batch_size, args.tile, args.overlap, args.whole,
                              args.device)
        for item in tqdm(found, total=len(images), desc="images", unit="image", disable=not images):
            if isinstance(item, predict.Skipped):
                report["skipped"].append({"file": str(item.path), "reason": item.reason})
                tqdm.write(f"ssd-zoo detect: skipped {item.reason}")
                continue
            path, image, detection = item
            results.write_picture(args.out / pictures[path], image, detection, names)
            report["images"].append({"file": str(path), "picture": str(pictures[path]), "height": image.shape[1],
                                     "width": image.shape[2], "detections": results.detections_json(detection, names)})
        stems = predict.output_names([n for _, n in videos] + [Path(_stream_name(s)) for s in streams], ".mp4")
        for source, out in zip([p for p, _ in videos] + streams, stems):
            _detect_video(args, model, names, source, out, report)
    finally:
        results.write_report(args.out / "detections.json", report)
    count = sum(len(r["detections"]) for r in report["images"])
    print(f"{len(report['images'])} images, {count} detections, {len(report['videos'])} videos -> {args.out}")
    if report["skipped"]:
        print(f"ssd-zoo detect: skipped {len(report['skipped'])} file(s), listed in {args.out / 'detections.json'}",
              file=sys.stderr)
        return SKIPPED_EXIT
    return 0


def _stream_name(url: str) -> str:
    """A file name for a stream's outputs: ``rtsp://host/cam`` -> ``rtsp_host_cam``."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in url).strip("_") or "stream"


def _detect_video(args: argparse.Namespace, model: Any, names: list[str], source: Path | str, out: Path,
                  report: dict[str, Any]) -> None:
    """One video: ``<out>.mp4`` annotated, ``<out>.jsonl``; a source FFmpeg cannot read goes to ``skipped``."""
    from tqdm import tqdm

    from ssd_zoo.detect import results
    from ssd_zoo.detect import video

    try:
        fps, total = video.frame_rate(source) / args.every, video.frame_count(source)
        frames = video.detect(model, source, every=args.every, batch_size=args.batch_size, track=args.track,
                              tile=args.tile, overlap=args.overlap, device=args.device)
        bar = tqdm(frames, total=None if total is None else -(-total // args.every), desc=str(out), unit="frame")
        count = results.write_video(bar, args.out / out, args.out / out.with_suffix(".jsonl"), fps, names)
    except ValueError as error:  # FFmpeg cannot open or decode it
        report["skipped"].append({"file": str(source), "reason": str(error)})
        tqdm.write(f"ssd-zoo detect: skipped {error}")
        return
    report["videos"].append({"file": str(source), "video": str(out), "frames": str(out.with_suffix(".jsonl")),
                             "detected_frames": count, "every": args.every, "track": args.track})


def add_convert(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert a checkpoint between ssd_zoo, torchvision, ssd.pytorch")
    parser.add_argument("input", help="checkpoint to read (.pth)")
    parser.add_argument("output", help="where to write the converted state dict (.pth)")
    parser.add_argument("--from", dest="source", choices=["auto", *convert.LAYOUTS], default="auto",
                        help="layout of INPUT (default: detected from its keys)")
    parser.add_argument("--to", dest="target", choices=convert.LAYOUTS, default="ssd_zoo",
                        help="layout of OUTPUT (default: ssd_zoo)")
    parser.add_argument("--input-order", choices=["rgb", "bgr"], default="rgb",
                        help="channel order the non-ssd_zoo network was trained on (ssd_zoo models take RGB)")
    parser.add_argument("--anchors", choices=["voc", "coco"],
                        help="the default boxes of an ssd_zoo INPUT saved before ssd_zoo 0.2 (newer files record "
                             "theirs); needed for --to torchvision, whose ssd300_vgg16 always uses 'coco'")
    parser.set_defaults(run=run_convert)


# torchvision's ssd300_vgg16 builds its own default boxes, the ones ssd_zoo calls anchors="coco" (at 300 px).
TORCHVISION_ANCHORS = "coco"


def _check_torchvision_can_use(state: dict[str, Tensor], anchors: str | None, where: str) -> None:
    """Refuse a conversion to torchvision that torchvision would decode against other default boxes.

    The model's boxes: its ssd_zoo record, else ``anchors`` (implied by the input layout, or ``--anchors``).
    """
    from ssd_zoo.ops.default_boxes import DefaultBoxSpec, preset

    levels = convert.num_levels(state)
    if levels != 6:
        raise SystemExit(f"ssd-zoo convert: {where} has {levels} head levels; torchvision's ssd300_vgg16 has 6 (SSD300)")
    theirs = preset(300, TORCHVISION_ANCHORS)
    record = convert.split_record(state)[1]
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


def run_convert(args: argparse.Namespace) -> int:
    """Convert ``args.input`` to ``args.output``; the result is checked by loading it into the model it fits."""
    raw = convert.unwrap(read_file(args.input))
    source = convert.detect_layout(raw, args.input) if args.source == "auto" else args.source
    checkpoint = checkpoint_from(raw, args.input, args.input_order if source != "ssd_zoo" else "rgb", layout=source)
    state = checkpoint.state_dict
    model = _check_fits_a_model(checkpoint, args.input)
    if args.target == "torchvision":
        _check_torchvision_can_use(state, convert.LAYOUT_ANCHORS[source] or args.anchors, args.input)
    if args.target == "ssd_zoo":  # the model's own state dict: its record names the builder, boxes and classes
        out = {k: v.contiguous() for k, v in model.state_dict().items()}
    else:
        out = convert.from_ssd_zoo(state, args.target, args.input_order)
    save_atomic(out, args.output)  # onto the input itself too: it is read whole first
    print(f"{args.input} ({source}) -> {args.output} ({args.target}): {len(out)} tensors")
    return 0


def _check_fits_a_model(checkpoint: Checkpoint, where: str) -> Any:
    """The registered model the file fits, built with its weights (:func:`ssd_zoo.registry.load`'s choice), so
    that keys and shapes are checked before anything is written."""
    name, builder_kwargs = checkpoint.architecture()
    return build(name, weights=checkpoint, **builder_kwargs)


def add_export(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("export", help="write an ONNX graph with decoding and NMS inside")
    parser.add_argument("model", help="registered model name, e.g. ssd300_vgg16")
    parser.add_argument("out", type=Path, help="the .onnx file to write")
    parser.add_argument("--weights", default="DEFAULT", help="weights name (e.g. VOC0712), a checkpoint path, or none")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--score", type=float, help="score threshold inside the graph (default: the model's, 0.01)")
    parser.add_argument("--format", choices=["onnx", "openvino"], default="onnx",
                        help="onnx (onnxruntime; default) or openvino (IR: OUT.xml + OUT.bin; pip install 'ssd_zoo[openvino]')")
    parser.add_argument("--int8", action="store_true", help="static int8 quantization, calibrated on --calibration")
    parser.add_argument("--calibration", type=Path, help="folder of photos to calibrate int8 on (the first "
                        "--calibration-count by name)")
    parser.add_argument("--calibration-count", type=int, default=32, help="calibration photos (default 32)")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ssd_zoo.deploy.export import export

    if args.int8 and args.calibration is None:
        raise SystemExit("ssd-zoo export: --int8 needs --calibration DIR (a folder of photos like the ones to detect)")
    model, name, weights = build_from_args(args, **({} if args.score is None else {"score_thresh": args.score}))
    model = model.eval()
    calibration = None
    if args.int8:
        from ssd_zoo.deploy.quantize import read_calibration_images

        calibration = read_calibration_images(args.calibration, args.calibration_count)
    export(model, args.out, format=args.format, int8=args.int8, calibration_images=calibration, opset=args.opset)
    size = model.input_size
    print(f"{name} ({weights}) -> {args.out}: input images [N, 3, {size}, {size}] in [0, 1]; outputs "
          f"num_detections [N], boxes [N, {model.detections_per_img}, 4], scores, labels")
    return 0


def add_anchors(subparsers: Subparsers) -> None:
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
    parser.set_defaults(run=run_anchors)


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


def run_anchors(args: argparse.Namespace) -> int:
    from ssd_zoo import finetune as anchors

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




def check_arguments(args: argparse.Namespace) -> None:
    """Raise ValueError naming the option for a number out of range or a device that is not there (whichever
    of ``--score``, ``--batch-size``, ``--opset``, ``--tile``, ``--overlap``, ``--every``, ``--device`` the
    subcommand has)."""
    score, batch_size, opset = (getattr(args, key, None) for key in ("score", "batch_size", "opset"))
    if score is not None and not 0.0 <= score <= 1.0:
        raise ValueError(f"--score: expected a score threshold in [0, 1], found {score}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size: expected at least 1 image, found {batch_size}")
    if opset is not None and not 11 <= opset <= 25:
        raise ValueError(f"--opset: expected an ONNX opset in 11..25, found {opset}")
    tile, overlap, every = (getattr(args, key, None) for key in ("tile", "overlap", "every"))
    if tile is not None and tile < 32:
        raise ValueError(f"--tile: expected a tile side of at least 32 pixels, found {tile}")
    if overlap is not None and not 0.0 <= overlap < 1.0:
        raise ValueError(f"--overlap: expected a fraction of a tile in [0, 1), found {overlap}")
    if every is not None and every < 1:
        raise ValueError(f"--every: expected to detect every N-th frame with N >= 1, found {every}")
    device = getattr(args, "device", None)
    if device is not None:
        try:
            kind = torch.device(device).type
        except RuntimeError:
            raise ValueError(f"--device: expected a torch device such as cpu, cuda or cuda:1, found {device!r}") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: torch.cuda.is_available() is False here; pass --device cpu")


def _run(args: argparse.Namespace) -> int:
    check_arguments(args)
    return args.run(args)


SUBCOMMANDS: list[Callable[[Subparsers], None]] = [add_list, add_detect, add_convert, add_export, add_anchors]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssd-zoo", description="SSD model zoo: list, detect, convert, export.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    for subparser in subparsers.choices.values():  # `ssd-zoo detect ... --debug`, wherever it is typed
        add_debug_flag(subparser)
    args = parser.parse_args(argv)
    # Bad input (a missing or corrupt file, an unknown name, a bad number): one line, exit code 2 (ssd_zoo.errors).
    return run_main(lambda _: _run(args), f"ssd-zoo {args.command}", argv)


if __name__ == "__main__":
    raise SystemExit(main())
