"""The ``ssd-zoo`` command line: list models and weights, detect objects in images, convert checkpoints.

    ssd-zoo list
    ssd-zoo detect photo.jpg photos/ --model ssd300_vgg16 --weights VOC0712 --score 0.5 --out detections/
    ssd-zoo convert --from ssd.pytorch ssd300_mAP_77.43_v2.pth ssd300_voc.pth
    ssd-zoo convert --to torchvision --anchors coco my_coco_ssd300.pth for_torchvision.pth
    ssd-zoo export ssd300_vgg16 --weights VOC0712 ssd300_vgg16.onnx

Adding a subcommand: write ``add_<name>(subparsers)`` that calls ``subparsers.add_parser(...)``, adds its
arguments and ``set_defaults(run=<function(args) -> exit code>)``, and append it to :data:`SUBCOMMANDS`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from . import convert
from .hub import read_file, save_atomic, write_atomic
from .registry import build, list_models
from .weights import (
    COCO_CATEGORIES, VOC_CATEGORIES, Checkpoint, checkpoint_from, get_model_weights, get_weights, list_weights, load,
    resolve_weights,
)

Subparsers = Any  # argparse's _SubParsersAction, private in the standard library
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


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
    print(f"\nbackbone initialisation (ssd_zoo.weights.load_vgg16_backbone): {', '.join(backbones)}")
    if args.verbose:
        print("\n" + "\n".join(details))
    return 0


def add_detect(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("detect", help="detect objects; write pictures with boxes and a JSON")
    parser.add_argument("images", nargs="+", help="image files (JPEG/PNG) or folders of them")
    parser.add_argument("--model", help="registered model name (default: the one a checkpoint file records, else "
                        "ssd300_vgg16)")
    parser.add_argument("--weights", default="DEFAULT", help="weights name (e.g. VOC0712), or a checkpoint path")
    parser.add_argument("--score", type=float, default=0.5, help="keep detections scoring above this (default 0.5)")
    parser.add_argument("--out", type=Path, default=Path("detections"), help="output folder (default: detections)")
    parser.add_argument("--categories", help="class names: 'voc', 'coco', or a text file with one name per line, "
                        "background first (default: the weights' own names)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    parser.set_defaults(run=run_detect)


def _image_paths(inputs: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise SystemExit(f"ssd-zoo detect: expected an image file or a folder, found nothing at {item}")
    if not paths:
        raise SystemExit(f"ssd-zoo detect: no {'/'.join(sorted(IMAGE_SUFFIXES))} images in {inputs}")
    return paths


def _picture_names(paths: list[Path]) -> dict[Path, str]:
    """``<stem>.jpg`` per input; a stem met again (``a/x.jpg``, ``b/x.png``) gets ``<stem>_2.jpg``, ... so
    that no picture overwrites another."""
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for path in paths:
        name, n = f"{path.stem}.jpg", 1
        while name in taken:
            n += 1
            name = f"{path.stem}_{n}.jpg"
        taken.add(name)
        names[path] = name
    return names


def _categories(choice: str | None, model: Any) -> list[str]:
    """Names for labels ``0 .. num_classes-1``: the ``--categories`` choice, the model's own, else numbers."""
    num_classes = model.num_classes
    if choice in ("voc", "coco"):
        names = VOC_CATEGORIES if choice == "voc" else COCO_CATEGORIES
    elif choice is not None:
        names = [line.strip() for line in Path(choice).read_text().splitlines() if line.strip()]
    else:
        names = model.categories or [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise SystemExit(f"ssd-zoo detect: the model has {num_classes} classes, but {choice} names {len(names)}")
    return list(names)


def _draw(image: Tensor, detection: dict[str, Tensor], names: list[str]) -> Tensor:
    """uint8 ``[3, H, W]`` with each box and ``"<name> <score>"`` drawn, one colour per class."""
    from torchvision.utils import draw_bounding_boxes

    labels = detection["labels"].tolist()
    if not labels:  # nothing to draw: the picture as it is (torchvision would warn)
        return (image * 255).round().to(torch.uint8)
    texts = [f"{names[label]} {score:.2f}" for label, score in zip(labels, detection["scores"].tolist())]
    palette = ["red", "lime", "blue", "yellow", "cyan", "magenta", "orange", "white"]
    return draw_bounding_boxes((image * 255).round().to(torch.uint8), detection["boxes"], texts,
                               colors=[palette[label % len(palette)] for label in labels], width=2)


DEFAULT_MODEL = "ssd300_vgg16"


def build_from_args(args: argparse.Namespace, **kwargs: Any) -> tuple[Any, str, str]:
    """``(model, model name, weights as text)`` for ``--model`` and ``--weights``. Without ``--model``, a checkpoint
    file or URL becomes the model it fits (:func:`ssd_zoo.weights.load`: the builder an ssd_zoo file records, the
    recipes' too, or the model its layout names); otherwise the model is ``ssd300_vgg16``. The file is read once."""
    given = None if args.weights.lower() == "none" else args.weights
    weights = resolve_weights(given, args.model or DEFAULT_MODEL)
    if args.model is None and isinstance(weights, (str, Path)):  # a file or a URL: it says what it is
        model = load(weights, **kwargs)
        return model, (model.builder or {}).get("name", type(model).__name__), str(weights)
    name = args.model or DEFAULT_MODEL
    try:
        model = build(name, weights=weights, **kwargs)
    except TypeError as error:  # a builder that needs keywords the command line does not have (backbone=...)
        raise SystemExit(f"ssd-zoo {args.command}: model {name!r} cannot be built from the command line ({error}); "
                         "pass a checkpoint saved by ssd_zoo.build (it records its builder) without --model, or "
                         "build it in Python") from None
    return model, name, weights.name if isinstance(weights, Checkpoint) else str(weights)


def run_detect(args: argparse.Namespace) -> int:
    from PIL import Image  # torchvision's own dependency; torchvision.io's codecs are deprecated since 0.29
    from torchvision.transforms.functional import pil_to_tensor, to_pil_image

    model, name, weights = build_from_args(args, score_thresh=args.score)
    model = model.eval().to(args.device)
    names = _categories(args.categories, model)
    args.out.mkdir(parents=True, exist_ok=True)
    paths, results = _image_paths(args.images), []
    pictures = _picture_names(paths)
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start:start + args.batch_size]
        images = [pil_to_tensor(Image.open(p).convert("RGB")).float().div(255) for p in chunk]
        with torch.inference_mode():
            detections = model([image.to(args.device) for image in images])
        for path, image, detection in zip(chunk, images, detections):
            detection = {k: v.cpu() for k, v in detection.items()}
            picture = to_pil_image(_draw(image, detection, names))
            write_atomic(args.out / pictures[path], lambda f: picture.save(f, format="JPEG", quality=90))
            results.append({"file": str(path), "picture": pictures[path], "height": image.shape[1], "width": image.shape[2], "detections": [
                {"box": [round(c, 2) for c in box], "score": round(score, 4), "label": label, "name": names[label]}
                for box, score, label in zip(detection["boxes"].tolist(), detection["scores"].tolist(),
                                             detection["labels"].tolist())
            ]})
    report = {"model": name, "weights": weights, "score_thresh": args.score,
              "box_format": "xyxy, pixels of the original image", "images": results}
    write_atomic(args.out / "detections.json", lambda f: f.write(json.dumps(report, indent=1).encode()))
    print(f"{len(results)} images, {sum(len(r['detections']) for r in results)} detections -> {args.out}")
    return 0


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
    from .ops.default_boxes import DefaultBoxSpec, preset

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
    """The registered model the file fits, built with its weights (:func:`ssd_zoo.weights.load`'s choice), so
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
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    model, name, weights = build_from_args(args, **({} if args.score is None else {"score_thresh": args.score}))
    model = model.eval()
    export_onnx(model, args.out, opset=args.opset)
    size = model.input_size
    print(f"{name} ({weights}) -> {args.out}: input images [N, 3, {size}, {size}] in [0, 1]; outputs "
          f"num_detections [N], boxes [N, {model.detections_per_img}, 4], scores, labels")
    return 0


SUBCOMMANDS: list[Callable[[Subparsers], None]] = [add_list, add_detect, add_convert, add_export]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssd-zoo", description="SSD model zoo: list, detect, convert, export.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, RuntimeError, KeyError) as error:  # bad input: say what, no traceback
        raise SystemExit(f"ssd-zoo {args.command}: {error}") from None


if __name__ == "__main__":
    raise SystemExit(main())
