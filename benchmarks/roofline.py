"""Hardware limit: GFLOP/s of SSD300-VGG16's network pass against the device's peak in the same precision.

    python -m benchmarks.roofline [--device cuda] [--repeat 5] [--warmup 1] [--quick] [--json rows.jsonl]

The network pass is ``model.dense_predictions`` on a channels_last ``[B, 3, 300, 300]`` batch (normalise,
backbone, head, softmax and box decoding; no resizing at that size); its FLOPs are counted by
``torch.utils.flop_counter`` (2 per multiply-add). The limit it is held against is

- on a GPU in :data:`DATASHEET_TFLOPS`, the datasheet's dense peak for the precision (fp32 runs without TF32,
  so its limit is the CUDA cores' fp32 peak; bf16 and fp16 autocast use the tensor cores' peak);
- elsewhere (CPUs), the faster of two large dense ops measured in the same precision and layout, interleaved
  with the network: a 3x3 512->512 convolution on a 38x38 map (VGG's conv4_3, same batch) and a square matmul.

The outputs check: every score and box is finite and each default box's scores sum to 1.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import ssd_zoo
from benchmarks.harness import autocast, emit, interleaved, parse_args, precisions

# Dense (no sparsity) peak TFLOP/s from NVIDIA's datasheets; the first key found in the device name applies.
DATASHEET_TFLOPS = {
    "H200 NVL": {"fp32": 60.0, "bf16": 835.0, "fp16": 835.0},
    "H200": {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0},
    "H100 NVL": {"fp32": 60.0, "bf16": 835.0, "fp16": 835.0},
    "H100 PCIe": {"fp32": 51.0, "bf16": 756.0, "fp16": 756.0},
    "H100": {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0},
    "A100": {"fp32": 19.5, "bf16": 312.0, "fp16": 312.0},
}


def datasheet_gflops(device: str, precision: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in DATASHEET_TFLOPS.items():
        if key in name:
            return peaks[precision] * 1e3
    return None


def flops(fn, *args) -> int:  # noqa: ANN001
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(*args)
    return counter.get_total_flops()


def outputs_ok(dense: dict[str, torch.Tensor]) -> str:
    finite = bool(torch.isfinite(dense["scores"]).all() and torch.isfinite(dense["boxes"]).all())
    sums = bool(torch.allclose(dense["scores"].sum(-1), torch.ones(()), atol=1e-3))
    return "finite, scores sum to 1" if finite and sums else f"INVALID (finite: {finite}, sum to 1: {sums})"


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=5, warmup=1)
    device = args.device
    batch, side = (2, 2048) if args.quick else (8, 4096)
    model = ssd_zoo.build("ssd300_vgg16", num_classes=21).eval().to(device)
    images = torch.rand(batch, 3, 300, 300, device=device).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(512, 512, 3, padding=1).eval().to(device, memory_format=torch.channels_last)
    feature = torch.rand(batch, 512, 38, 38, device=device).contiguous(memory_format=torch.channels_last)
    a, b = torch.rand(side, side, device=device), torch.rand(side, side, device=device)
    network_flops, conv_flops, matmul_flops = flops(model.dense_predictions, images), flops(conv, feature), 2 * side**3
    rows = []
    for precision in precisions(device):
        def run(fn, *inputs):  # noqa: ANN001, ANN202
            with torch.inference_mode(), autocast(precision, device):
                return fn(*inputs)

        times = interleaved({"network": lambda: run(model.dense_predictions, images),
                             "conv": lambda: run(conv, feature), "matmul": lambda: run(torch.mm, a, b)},
                            repeat=args.repeat, warmup=args.warmup, device=device)
        achieved = network_flops / times["network"] / 1e9
        measured = {"conv": conv_flops / times["conv"] / 1e9, "matmul": matmul_flops / times["matmul"] / 1e9}
        datasheet = datasheet_gflops(device, precision)
        peak = datasheet or max(measured.values())
        source = "datasheet" if datasheet else f"measured, best of 3x3 512->512 conv and {side}^2 matmul"
        rows.append({"benchmark": f"hardware limit ({device})",
                     "case": f"dense_predictions, batch {batch}, {precision}",
                     "ssd_zoo": f"{achieved:.0f} GFLOP/s ({network_flops / 1e9:.0f} GFLOP)",
                     "alternative": f"peak {peak:.0f} GFLOP/s ({source}); conv {measured['conv']:.0f}, "
                                    f"matmul {measured['matmul']:.0f} GFLOP/s",
                     "speed-up": f"{achieved / peak:.0%} of peak", "target": ">= 90%",
                     "outputs": outputs_ok(run(model.dense_predictions, images))})
    emit(rows, args.json)


if __name__ == "__main__":
    main()
