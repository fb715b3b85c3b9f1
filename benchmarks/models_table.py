"""The README's models table: each named model's backbone, input size, default boxes, parameters, GFLOPs, latency.

    python -m benchmarks.models_table [--repeat 5] [--threads N] [--pattern "ssd300*"]

Both numbers are for the network — transform-normalised ``[1, 3, S, S]`` input through backbone and head —
since random weights make post-processing cost meaningless (every class scores about 1/C). GFLOPs are counted
by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs); latency is the median of
``--repeat`` batch-1 forward passes after one warm-up, in the same process as torchvision's two SSDs, which
are measured the same way as the reference rows.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

import ssd_zoo

GENERIC = {"ssd300", "ssd512", "ssdlite320"}  # need a backbone argument; their named variants are listed instead


def network(model: nn.Module) -> Callable[[Tensor], object]:
    """``[1, 3, S, S]`` -> the raw head outputs (ssd_zoo) or backbone features + head outputs (torchvision)."""
    if isinstance(model, ssd_zoo.SSD):
        return lambda x: model.head(model.backbone(x))
    return lambda x: model.head(list(model.backbone(x).values()))


def measure(fn: Callable[[Tensor], object], size: int, repeat: int) -> tuple[float, float]:
    """(GFLOPs, median milliseconds) of ``fn`` on one ``size x size`` image."""
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            fn(x)  # also the warm-up
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
    return counter.get_total_flops() / 1e9, 1e3 * statistics.median(times)


def backbone_name(model: ssd_zoo.SSD) -> str:
    backbone = model.backbone
    if isinstance(backbone, ssd_zoo.TimmBackbone):
        return f"timm `{backbone.body.pretrained_cfg.get('architecture', '?')}`"
    return type(backbone).__name__.removesuffix("Backbone")


def row(name: str, backbone: str, size: int, boxes: int, model: nn.Module, repeat: int) -> str:
    params = sum(p.numel() for p in model.parameters()) / 1e6
    gflops, ms = measure(network(model.eval()), size, repeat)
    return f"| {name} | {backbone} | {size} | {boxes} | {params:.1f} | {gflops:.1f} | {ms:.0f} |"


def default_box_count(model: ssd_zoo.SSD) -> int:
    with torch.no_grad():
        maps = model.backbone(torch.zeros(1, 3, model.input_size, model.input_size))
    return int(model.default_boxes(maps, (model.input_size, model.input_size)).shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed forward passes per model (median)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--pattern", default="*", help="fnmatch pattern over ssd_zoo.list_models()")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} torch threads"
    print(f"CPU: {cpu}, load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}; median of {args.repeat}\n")
    print("| model | backbone | input | default boxes | params (M) | GFLOPs | CPU ms (batch 1) |")
    print("|---|---|---|---|---|---|---|")
    for name in ssd_zoo.list_models(args.pattern):
        if name in GENERIC:
            continue
        model = ssd_zoo.build(name).eval()
        boxes = default_box_count(model)
        print(row(name, backbone_name(model), model.input_size, boxes, model, args.repeat), flush=True)
    references = [
        ("ssd300_vgg16", ssd300_vgg16, 300, 8732),
        ("ssdlite320_mobilenet_v3_large", ssdlite320_mobilenet_v3_large, 320, 3234),
    ]
    for name, builder, size, boxes in references:
        model = builder(weights=None, weights_backbone=None, num_classes=21)
        print(row(f"torchvision {name} (reference)", "torchvision", size, boxes, model, args.repeat), flush=True)


if __name__ == "__main__":
    main()
