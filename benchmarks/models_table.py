"""The models table of docs/benchmarks.md: each named model's backbone, input size, default boxes, parameters, GFLOPs, latency.

    python -m benchmarks.models_table [--repeat 5] [--warmup 1] [--threads 1] [--pattern "ssd300*"] [--quick]

Both numbers are for the network pass on one ``[1, 3, S, S]`` image already at the input size S, since random
weights make post-processing cost meaningless (every class scores about 1/C): ssd_zoo's
``model.dense_predictions`` (normalise, backbone, head, softmax, box decoding) and, for torchvision's two SSDs,
the same steps with torchvision's own parts (:func:`benchmarks.reference.torchvision_dense_predictions`).
GFLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs); CPU ms is the
median of ``--repeat`` rounds after ``--warmup``, with ``--threads`` torch threads (1 by default, as the table
says), all models interleaved in one process (:func:`benchmarks.harness.interleaved`) so that they share the
machine's load. ``--quick``: one round of the two smallest models and torchvision's SSDLite.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

import ssd_zoo
from benchmarks.harness import describe, interleaved, machine
from benchmarks.reference import torchvision_dense_predictions

GENERIC = {"ssd", "ssd300", "ssd512", "ssdlite320"}  # need a backbone argument; their named variants are listed instead
QUICK = {"ssdlite320_mobilenetv3_large", "ssd300_mobilenetv3_large", "torchvision ssdlite320_mobilenet_v3_large"}
REFERENCES = {"torchvision ssd300_vgg16": (ssd300_vgg16, 300), "torchvision ssdlite320_mobilenet_v3_large":
              (ssdlite320_mobilenet_v3_large, 320)}


def network(model: nn.Module) -> Callable[[Tensor], dict[str, Tensor]]:
    """``[1, 3, S, S]`` -> the dense predictions: ssd_zoo's own, or torchvision's counterpart."""
    if isinstance(model, ssd_zoo.SSD):
        return model.dense_predictions
    return lambda x: torchvision_dense_predictions(model, x)


def gflops(fn: Callable[[Tensor], object], x: Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn(x)
    return counter.get_total_flops() / 1e9


def backbone_name(model: nn.Module) -> str:
    if not isinstance(model, ssd_zoo.SSD):
        return "torchvision"
    config = getattr(getattr(model.backbone, "body", None), "pretrained_cfg", None)  # a timm model's
    if config is not None:
        return f"timm `{config.get('architecture', '?')}`"
    return type(model.backbone).__name__.removesuffix("Backbone")


def build_all(pattern: str, quick: bool) -> dict[str, tuple[nn.Module, int]]:
    """Name -> (eval model, input size): the registered models matching ``pattern``, then torchvision's two."""
    models = {}
    for name in ssd_zoo.list_models(pattern):
        if name not in GENERIC and (not quick or name in QUICK):
            model = ssd_zoo.build(name).eval()
            models[name] = (model, model.input_size)
    for name, (builder, size) in REFERENCES.items():
        if not quick or name in QUICK:
            models[name] = (builder(weights=None, weights_backbone=None, num_classes=21).eval(), size)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (docs/benchmarks.md's table: 1)")
    parser.add_argument("--pattern", default="*", help="fnmatch pattern over ssd_zoo.list_models()")
    parser.add_argument("--quick", action="store_true", help="one round of three small models")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.warmup = 1, 0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = build_all(args.pattern, args.quick)
    inputs = {name: torch.rand(1, 3, size, size) for name, (_, size) in models.items()}
    passes = {name: network(model) for name, (model, _) in models.items()}
    boxes = {}
    with torch.inference_mode():
        for name, fn in passes.items():
            boxes[name] = fn(inputs[name])["default_boxes"].shape[0]
    counted = {name: gflops(fn, inputs[name]) for name, fn in passes.items()}

    def timed(name: str) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return passes[name](inputs[name])
        return run

    times = interleaved({name: timed(name) for name in passes}, repeat=args.repeat, warmup=args.warmup)
    print(f"{describe(machine())}; median of {args.repeat} interleaved rounds after {args.warmup} warm-up\n")
    print("| model | backbone | input | default boxes | params (M) | GFLOPs | CPU ms (batch 1) |")
    print("|---|---|---|---|---|---|---|")
    for name, (model, size) in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        label = f"{name} (reference)" if name in REFERENCES else name
        print(f"| {label} | {backbone_name(model)} | {size} | {boxes[name]} | {params:.1f} | {counted[name]:.1f} "
              f"| {times[name] * 1e3:.0f} |")


if __name__ == "__main__":
    main()
