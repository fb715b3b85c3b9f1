"""Hardware limit: GFLOP/s of SSD300-VGG16's network part (backbone + head) vs a large convolution's.

    python -m benchmarks.roofline [--device cuda] [--repeat 5] [--quick] [--json rows.jsonl]

The network's FLOPs are counted by ``torch.utils.flop_counter`` (2 per multiply-add); the reference is a
3x3, 512 -> 512 convolution on a batch-8 38x38 map (VGG's conv4_3 shape, ~50 GFLOP), the fastest dense
work this machine does. Both run in the same layout (channels_last) and precision, interleaved.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import ssd_zoo
from benchmarks.harness import emit, interleaved, parse_args

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def flops(fn, *args) -> int:  # noqa: ANN001
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(*args)
    return counter.get_total_flops()


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=5, warmup=1)
    device = args.device
    batch = 2 if args.quick else 8
    model = ssd_zoo.build("ssd300_vgg16", num_classes=21).eval().to(device, memory_format=torch.channels_last)
    network = nn.Sequential(model.backbone, _Head(model.head))
    images = torch.rand(batch, 3, 300, 300, device=device).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(512, 512, 3, padding=1).eval().to(device, memory_format=torch.channels_last)
    feature = torch.rand(batch, 512, 38, 38, device=device).contiguous(memory_format=torch.channels_last)
    network_flops, conv_flops = flops(network, images), flops(conv, feature)
    rows = []
    for precision in ["fp32", "bf16"] + (["fp16"] if device.startswith("cuda") else []):
        dtype = DTYPES[precision]

        def run(module: nn.Module, x: torch.Tensor) -> None:
            autocast = torch.autocast(device.split(":")[0], dtype=dtype) if dtype else contextlib.nullcontext()
            with torch.inference_mode(), autocast:
                module(x)

        times = interleaved({"network": lambda: run(network, images), "conv": lambda: run(conv, feature)},
                            repeat=args.repeat, warmup=args.warmup, device=device)
        achieved, peak = network_flops / times["network"] / 1e9, conv_flops / times["conv"] / 1e9
        rows.append({"benchmark": f"hardware limit ({device})", "case": f"backbone + head, batch {batch}, {precision}",
                     "ssd_zoo": f"{achieved:.0f} GFLOP/s ({network_flops / 1e9:.0f} GFLOP)",
                     "alternative": f"3x3 512->512 conv peak: {peak:.0f} GFLOP/s",
                     "speed-up": f"{achieved / peak:.0%} of peak", "target": ">= 90%", "outputs": ""})
    emit(rows, args.json)


class _Head(nn.Module):
    """The head as a one-argument module, so that backbone + head chain in ``nn.Sequential``."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(features)


if __name__ == "__main__":
    main()
