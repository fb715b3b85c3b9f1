"""``ssd-zoo export``: one ONNX graph (or OpenVINO IR) with decoding and NMS inside, int8 on request.

    ssd-zoo export ssd300_vgg16 --weights VOC0712 ssd300_vgg16.onnx
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ssd_zoo.cli.args import Subparsers, build_from_args


FORMAT_OF = {"openvino": "openvino", "onnxruntime": "onnx"}  # --format of each int8 backend that writes a file


def add(subparsers: Subparsers) -> None:
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
    if args.int8:
        print(int8_choice(args.format))
    size = model.input_size
    print(f"{name} ({weights}) -> {args.out}: input images [N, 3, {size}, {size}] in [0, 1]; outputs "
          f"num_detections [N], boxes [N, {model.detections_per_img}, 4], scores, labels")
    return 0


def int8_choice(format: str) -> str:
    """What quantized the file (``format``'s backend) and which file backend ssd_zoo.quantize chooses on this
    CPU, with its measured reason: one line of ``ssd-zoo export --int8``'s output."""
    from ssd_zoo.deploy.quantize import choose_backend

    ran = "openvino" if format == "openvino" else "onnxruntime"
    best, reason = choose_backend(among=FORMAT_OF)
    line = f"int8: {ran} ({'NNCF' if ran == 'openvino' else 'static QDQ'}, --format {format}); ssd_zoo.quantize's " \
           f"choice for a file on this CPU: {best} ({reason})"
    return line if best == ran else f"{line}; --format {FORMAT_OF[best]} writes it"

