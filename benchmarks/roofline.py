"""Hardware limit: GOP/s of SSD300-VGG16's network pass against the device's peak in the same precision.

    python -m benchmarks.roofline [--device cuda] [--repeat 5] [--warmup 1] [--quick] [--json rows.jsonl]

The network pass is ``model.dense_predictions`` on a channels_last ``[B, 3, 300, 300]`` batch (normalise,
backbone, head, softmax and box decoding; no resizing at that size); its operations are counted by
``torch.utils.flop_counter`` (2 per multiply-add; the same count for every precision). The paths:

- fp32 and bf16 autocast, eager (and fp16 autocast on a GPU);
- on a CPU, PT2E int8 (``ssd_zoo.quantize(..., backend="pt2e")``: the backbone and head lowered to oneDNN's
  int8 kernels) and OpenVINO int8 (the NNCF-quantized IR that ``ssd_zoo.quantize`` compiles; its graph also
  decodes and runs NMS, so its network time is the sum of its convolution layers' times from OpenVINO's
  per-layer counters, ``PERF_COUNT``, median of as many more calls as timed rounds; the row also gives the
  whole graph's time), each calibrated on the sample photos.

The limit each path is held against is

- on a GPU in :data:`DATASHEET_TFLOPS`, the datasheet's dense peak for the precision (fp32 runs without TF32,
  so its limit is the CUDA cores' fp32 peak; bf16 and fp16 autocast use the tensor cores' peak);
- on a CPU, the faster of two large dense ops measured in the same precision and with the same kernels,
  interleaved with the network (:mod:`benchmarks.peak`: a 3x3 512->512 convolution on a 38x38 map and a
  square matmul; int8 through PT2E and oneDNN, and the convolution through OpenVINO too), with the oneDNN
  kernels each ran and their instruction set (AMX, AVX512_VNNI, AVX512, ...), and, for OpenVINO, the kernels
  its convolutions ran (``exec_type``).

The outputs check: every score and box is finite and each default box's scores sum to 1.
"""
from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import ssd_zoo
from benchmarks.harness import autocast, emit, interleaved, parse_args, precisions, voc_sized_images
from benchmarks.peak import measure, ran, sizes
from ssd_zoo.deploy.cpu import cpu_model, int8_isa

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


def _in(precision: str, device: str, fn: Callable[..., Any], *inputs: Any) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode(), autocast(precision, device):
            return fn(*inputs)

    return run


def gpu_rows(args: Any, model: ssd_zoo.SSD, images: torch.Tensor, network_flops: int) -> list[dict[str, str]]:
    """The eager paths against the datasheet's peak of each precision (or, for a GPU not in it, the faster of a
    3x3 512->512 convolution and a square matmul measured in the precision, interleaved with the network)."""
    device, side = args.device, 2048 if args.quick else 4096
    conv = nn.Conv2d(512, 512, 3, padding=1).eval().to(device, memory_format=torch.channels_last)
    feature = torch.rand(len(images), 512, 38, 38, device=device).contiguous(memory_format=torch.channels_last)
    a, b = torch.rand(side, side, device=device), torch.rand(side, side, device=device)
    conv_flops, matmul_flops = flops(conv, feature), 2 * side**3
    rows = []
    for precision in precisions(device):
        runs = {"network": _in(precision, device, model.dense_predictions, images),
                "conv": _in(precision, device, conv, feature), "matmul": _in(precision, device, torch.mm, a, b)}
        times = interleaved(runs, repeat=args.repeat, warmup=args.warmup, device=device)
        achieved = network_flops / times["network"] / 1e9
        measured = {"conv": conv_flops / times["conv"] / 1e9, "matmul": matmul_flops / times["matmul"] / 1e9}
        datasheet = datasheet_gflops(device, precision)
        peak = datasheet or max(measured.values())
        source = "datasheet" if datasheet else f"measured, best of 3x3 512->512 conv and {side}^2 matmul"
        rows.append({"benchmark": f"hardware limit ({device})",
                     "case": f"dense_predictions, batch {len(images)}, {precision}",
                     "ssd_zoo": f"{achieved:.0f} GFLOP/s ({network_flops / 1e9:.0f} GFLOP)",
                     "alternative": f"peak {peak:.0f} GFLOP/s ({source}); conv {measured['conv']:.0f}, "
                                    f"matmul {measured['matmul']:.0f} GFLOP/s",
                     "speed-up": f"{achieved / peak:.0%} of peak", "target": ">= 90%",
                     "outputs": outputs_ok(runs["network"]())})
    return rows


class OpenVINONetwork:
    """The int8 IR ``ssd_zoo.quantize(backend="openvino")`` compiles, compiled here with per-layer counters:
    ``run()`` infers on the batch; :meth:`layers` splits the last inference's time by layer."""

    def __init__(self, model: ssd_zoo.SSD, calibration: list[torch.Tensor], images: torch.Tensor) -> None:
        import openvino as ov

        from ssd_zoo.deploy.export import export

        with tempfile.TemporaryDirectory() as folder:
            path = export(model, Path(folder) / "model.xml", format="openvino", int8=True,
                          calibration_images=calibration)
            self.compiled = ov.Core().compile_model(str(path), "CPU", {"PERF_COUNT": True})
        self.request = self.compiled.create_infer_request()
        self.batch = images.contiguous().numpy()

    def run(self) -> Any:
        return self.request.infer({0: self.batch})

    def layers(self, calls: int) -> tuple[float, float, str]:
        """``(seconds in all layers, seconds in convolutions, their kernels)``: medians over ``calls`` more
        inferences, each read from OpenVINO's per-layer counters (not timed with the others: reading them costs)."""
        totals, convs, kernels = [], [], set()
        for _ in range(calls):
            self.run()
            executed = [p for p in self.request.get_profiling_info() if p.real_time.total_seconds() > 0]
            conv = [p for p in executed if "Convolution" in p.node_type]
            kernels |= {p.exec_type for p in conv}
            totals.append(sum(p.real_time.total_seconds() for p in executed))
            convs.append(sum(p.real_time.total_seconds() for p in conv))
        return statistics.median(totals), statistics.median(convs), ", ".join(sorted(kernels))


def cpu_rows(args: Any, model: ssd_zoo.SSD, images: torch.Tensor, network_flops: int) -> list[dict[str, str]]:
    """Each path against this CPU's peak measured in its precision (:func:`benchmarks.peak.measure`)."""
    batch, side = sizes(args.quick)
    calibration = voc_sized_images(len(images))
    int8 = ssd_zoo.quantize(model, calibration, backend="pt2e")
    paths: dict[str, dict[str, Callable[[], Any]]] = {
        "fp32": {"fp32 eager": _in("fp32", "cpu", model.dense_predictions, images)},
        "bf16": {"bf16 autocast": _in("bf16", "cpu", model.dense_predictions, images)},
        "int8": {"PT2E int8": _in("fp32", "cpu", int8.dense_predictions, images)}}
    for runs in paths.values():
        for run in runs.values():
            run()  # the first call lowers PT2E's graphs for this batch size and packs weights: not what is logged
    kernels = {"fp32 eager": ran(paths["fp32"]["fp32 eager"]), "bf16 autocast": ran(paths["bf16"]["bf16 autocast"]),
               "PT2E int8": ran(paths["int8"]["PT2E int8"])}
    openvino = None
    try:
        openvino = OpenVINONetwork(model, calibration, images)
        paths["int8"]["OpenVINO int8"] = openvino.run
    except ImportError as error:
        print(f"OpenVINO int8: not measured ({error})", flush=True)
    machine = f"{cpu_model()}; int8 ISA {int8_isa()}, PyTorch kernels {torch.backends.cpu.get_cpu_capability()}"
    rows = []
    for precision, runs in paths.items():
        rates, peak_kernels, times = measure(precision, batch, side, args.repeat, args.warmup, runs)
        best = max(rates, key=rates.get)
        peak = rates[best]
        limit = (f"peak {peak:.0f} GOP/s ({best}: {peak_kernels[best]}); "
                 + ", ".join(f"{op} {rate:.0f}" for op, rate in rates.items()) + f" GOP/s (matmul {side}^2)")
        for name, seconds in times.items():
            if name == "OpenVINO int8":
                total, network, what = openvino.layers(max(args.repeat, 1))
                seconds, note = network, (f"convolution layers {network * 1e3:.0f} ms of {total * 1e3:.0f} ms "
                                          f"in all layers (whole graph, NMS included: {times[name] * 1e3:.0f} ms); "
                                          f"ran {what}")
                check = "outputs of the graph: finite" if all(
                    torch.isfinite(torch.as_tensor(v)).all() for v in openvino.run().values()) else "INVALID"
            else:
                note, check = f"ran {kernels[name]}", outputs_ok(runs[name]())
            achieved = network_flops / seconds / 1e9
            rows.append({"benchmark": f"hardware limit (CPU: {machine})",
                         "case": f"dense_predictions, batch {len(images)}, {name}",
                         "ssd_zoo": f"{achieved:.0f} GOP/s ({network_flops / 1e9:.0f} GOP); {note}",
                         "alternative": limit, "speed-up": f"{achieved / peak:.0%} of peak" + (
                             " (above it: the ops measured are not this CPU's limit)" if achieved > peak else ""),
                         "target": ">= 50%" if precision == "int8" else "", "outputs": check})
    return rows


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=5, warmup=1)
    device = args.device
    batch = 2 if args.quick else 8
    model = ssd_zoo.build("ssd300_vgg16", num_classes=21).eval().to(device)
    images = torch.rand(batch, 3, 300, 300, device=device).contiguous(memory_format=torch.channels_last)
    network_flops = flops(model.dense_predictions, images)
    rows = (cpu_rows if device == "cpu" else gpu_rows)(args, model, images, network_flops)
    emit(rows, args.json)


if __name__ == "__main__":
    main()
