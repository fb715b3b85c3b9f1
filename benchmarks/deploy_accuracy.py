"""The mAP cost of each CPU deployment path, for one trained model: fp32, bf16, ssd_zoo.quantize's own choice, int8
PT2E, ONNX Runtime int8, OpenVINO fp32 and int8, each evaluated by ``recipes/eval_voc.py`` on the same test set.

    python -m benchmarks.deploy_accuracy [--config recipes/configs/shapes_quick.yaml] [--weights runs/demo/best.pth]

Defaults: the model ``make demo`` trains, on its shapes test set. Every int8 path is calibrated on the same
images: the first 32 of the training set (what ``eval_voc.py --int8`` uses). The exported files are written to a
temporary folder; each row says what its backend really ran (OpenVINO's inference precision, whether the graph
holds int8 FakeQuantize nodes) and the file size. Prints a Markdown table (VOC07 and VOC12 mAP, points) and, with
``--json PATH``, writes the rows.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from recipes import eval_voc
from ssd_zoo.train.config import load_config
from ssd_zoo.train.data import make_dataset
from ssd_zoo.deploy.export import export
from ssd_zoo.deploy.quantize import choose_backend
from ssd_zoo.deploy.runtime import load_runner


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="recipes/configs/shapes_quick.yaml")
    p.add_argument("--weights", default="runs/demo/best.pth")
    p.add_argument("--calibration-count", type=int, default=32)
    p.add_argument("--json", type=Path, help="also write the rows here")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(Path(args.config), {})
    calibration = eval_voc.training_images(cfg, args.calibration_count)
    model, _ = eval_voc.load_model(cfg, args.weights, make_dataset(cfg, train=False).class_names)
    model.eval()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = {name: export(model, Path(folder) / file, format=fmt, int8=int8, calibration_images=calibration)
                 for name, file, fmt, int8 in (("onnx_int8", "model_int8.onnx", "onnx", True),
                                               ("ov_fp32", "model.xml", "openvino", False),
                                               ("ov_int8", "model_int8.xml", "openvino", True))}
        paths = {
            "fp32 (PyTorch)": [],
            "bf16 autocast (`--amp`)": ["--amp"],
            "ssd_zoo.quantize's choice (`--int8`)": ["--int8"],
            "int8 PT2E (`--int8 --int8-backend pt2e`)": ["--int8", "--int8-backend", "pt2e"],
            "ONNX Runtime int8 QDQ": ["--backend", "onnxruntime", "--model-file", str(files["onnx_int8"])],
            "OpenVINO fp32, f32 forced": ["--backend", "openvino", "--model-file", str(files["ov_fp32"]),
                                          "--precision", "f32"],
            "OpenVINO int8 (NNCF), f32 forced": ["--backend", "openvino", "--model-file", str(files["ov_int8"]),
                                                 "--precision", "f32"],
        }
        ran = {"fp32 (PyTorch)": "fp32", "bf16 autocast (`--amp`)": "bf16 autocast",
               "ssd_zoo.quantize's choice (`--int8`)": f"{choose_backend()[0]}, the CPU's default precision",
               "int8 PT2E (`--int8 --int8-backend pt2e`)": "int8 (oneDNN)"}
        for name, key in (("ONNX Runtime int8 QDQ", "onnx_int8"), ("OpenVINO fp32, f32 forced", "ov_fp32"),
                          ("OpenVINO int8 (NNCF), f32 forced", "ov_int8")):
            runner = load_runner(files[key], precision="f32" if key.startswith("ov") else None)
            size = sum(p.stat().st_size for p in (files[key], files[key].with_suffix(".bin")) if p.exists())
            ran[name] = f"{runner.precision}, {size / 2**20:.1f} MiB"
        for name, extra in paths.items():
            out = Path(folder) / f"eval{len(rows)}"
            metrics = eval_voc.main(["--config", args.config, "--weights", args.weights, "--device", "cpu",
                                     "--output-dir", str(out), *extra])
            rows.append({"path": name, "ran": ran[name], "voc07_map": 100 * metrics["map_voc07"],
                         "voc12_map": 100 * metrics["map_voc12"]})
    base = rows[0]["voc07_map"]
    print("\n| path | ran | VOC07 mAP | VOC12 mAP | VOC07 vs fp32 |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['path']} | {row['ran']} | {row['voc07_map']:.2f} | {row['voc12_map']:.2f} | "
              f"{row['voc07_map'] - base:+.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
