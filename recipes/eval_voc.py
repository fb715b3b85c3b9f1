"""Evaluate an SSD on a VOC-format test split: per-class AP table, metrics.json, VOC results files.

    python recipes/eval_voc.py --config recipes/configs/ssd300_vgg16_voc0712.yaml --weights VOC0712
    python recipes/eval_voc.py --config recipes/configs/shapes_quick.yaml --weights runs/demo/best.pth --draw 8

``--weights``: a checkpoint written by train_voc.py (its own config builds the model), any checkpoint
file ssd_zoo reads (ssd_zoo, torchvision or ssd.pytorch layout), or published weights by name
(``ssd_zoo.weights.list_weights()``). Writes ``metrics.json`` (``{"map_voc07", "map_voc12", "ap": {class:
VOC07 AP}, "ap_voc12": {...}, "num_images"}``), ``results/comp4_det_test_<class>.txt`` and, with
``--draw N``, ``pictures/<image_id>.png`` into the output directory.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's ssd_zoo first

from ssd_zoo.errors import add_debug_flag, run_main  # noqa: E402
from ssd_zoo.train.config import TrainConfig, load_config, parse_override  # noqa: E402
from ssd_zoo.train.data import make_dataset, test_loader  # noqa: E402
from ssd_zoo.train.evaluation import evaluate_and_report  # noqa: E402
from ssd_zoo.train.model import model_to_evaluate  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, required=True, help="YAML file in recipes/configs/")
    p.add_argument("--weights", required=True, help="a checkpoint path or a published weights name")
    p.add_argument("--data-root", help="VOCdevkit folder (overrides data_root)")
    p.add_argument("--output-dir", help="where metrics.json and results go (default: the config's output_dir)")
    p.add_argument("--batch-size", type=int, help="images per inference batch (overrides eval_batch_size)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="fp16 autocast on CUDA, bf16 on the CPU")
    p.add_argument("--draw", type=int, default=0, help="save this many test images with detections drawn")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--int8", action="store_true", help="evaluate the PT2E int8 model (ssd_zoo.deploy.quantize; CPU)")
    p.add_argument("--calibration", type=Path, help="--int8: folder of calibration photos (default: the first "
                   "--calibration-count images of the config's training split)")
    p.add_argument("--calibration-count", type=int, default=32, help="--int8: calibration images (default 32)")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "openvino"], default="torch",
                   help="evaluate an exported --model-file in onnxruntime or OpenVINO (default: the torch model)")
    p.add_argument("--model-file", help="the file that --backend onnxruntime/openvino runs (ssd-zoo export)")
    p.add_argument("--precision", help="--backend openvino: INFERENCE_PRECISION_HINT, e.g. f32 (default: the CPU's)")
    add_debug_flag(p)
    args = p.parse_args(argv)
    if args.draw < 0:
        raise ValueError(f"--draw: expected a number of images >= 0, found {args.draw}")
    return args


class Deployed(torch.nn.Module):
    """An exported file's runner (:func:`ssd_zoo.deploy.runtime.load_runner`) where the evaluation takes a module."""

    def __init__(self, runner: Any) -> None:
        super().__init__()
        self.runner = runner

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.runner([im.cpu() for im in images])


def training_images(cfg: TrainConfig, count: int) -> list[torch.Tensor]:
    """The first ``count`` training images of ``cfg``'s data (float ``[3, H, W]`` in [0, 1]): the default
    calibration set of every int8 path."""
    train = make_dataset(cfg, train=True)
    return [train[i][0] for i in range(min(count, len(train)))]


def deployed_model(args: argparse.Namespace, cfg: TrainConfig, class_names: Sequence[str]) -> torch.nn.Module:
    """``--backend``/``--model-file``, or the ``--int8`` PT2E model, checked against the test set's classes."""
    num_classes = len(class_names) + 1
    if args.backend != "torch":
        from ssd_zoo.deploy.runtime import load_runner

        if args.model_file is None:
            raise ValueError(f"--backend {args.backend}: expected --model-file (written by ssd-zoo export), found none")
        runner = load_runner(args.model_file, args.backend, precision=args.precision)
        if runner.num_classes != num_classes:
            raise ValueError(f"--model-file {args.model_file}: its model has {runner.num_classes} classes, the test "
                             f"set {num_classes} (background included)")
        return Deployed(runner)
    model, cfg = model_to_evaluate(cfg, args.weights, class_names)
    if args.int8:
        from ssd_zoo.deploy.quantize import quantize, read_calibration_images

        if args.calibration is not None:
            images = read_calibration_images(args.calibration, args.calibration_count)
        else:
            images = training_images(cfg, args.calibration_count)
        model = quantize(model.eval(), images)
    return model


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    overrides = dict(parse_override(item) for item in args.set)
    named = {"data_root": args.data_root, "output_dir": args.output_dir, "eval_batch_size": args.batch_size}
    cfg = load_config(args.config, {**overrides, **{k: v for k, v in named.items() if v is not None}})
    device = torch.device(args.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    loader = test_loader(cfg)
    names = loader.dataset.class_names
    if args.int8 or args.backend != "torch":
        model = deployed_model(args, cfg, names)
        device = torch.device("cpu")
    else:
        model, cfg = model_to_evaluate(cfg, args.weights, names)
    model.to(device).eval()

    return evaluate_and_report(model, loader, device, args.amp, cfg.output_dir, args.draw, cfg.draw_score,
                               {"weights": str(args.weights), "model": cfg.model, "backbone": cfg.backbone,
                                "int8": args.int8, "backend": args.backend, "model_file": args.model_file})


if __name__ == "__main__":
    # Bad input (a missing or corrupt file, a bad config, a value out of range): one line, exit code 2.
    run_main(main, "eval_voc.py")
