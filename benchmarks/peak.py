"""This CPU's peak rate per precision (fp32, bf16, int8), and the instruction set its kernels ran on.

    python -m benchmarks.peak [--repeat 5] [--warmup 1] [--quick] [--json rows.jsonl]

Per precision, two large dense ops, in the layout and with the kernels the SSD paths use:

- a 3x3 512->512 convolution on a 38x38 map (VGG16's conv4_3), channels_last, batch B;
- a square matmul of side N (``nn.Linear`` on an ``[N, N]`` input);
- for int8, where OpenVINO and NNCF are installed, the same convolution quantized by NNCF and run by OpenVINO's
  CPU plugin (its int8 kernels may be faster than oneDNN's through PyTorch; the faster sets the peak).

fp32 runs them eagerly (the matmul in MKL's BLAS, the convolution in oneDNN), bf16 under autocast (oneDNN's
bf16 kernels), int8 as PT2E quantized modules lowered to oneDNN's int8 kernels (``onednn.qconv_pointwise``,
``onednn.qlinear_pointwise``: u8 activations x s8 weights), built by :func:`ssd_zoo.deploy.pt2e.int8_graph`,
the function that quantizes the SSD. The peak is the faster of the two, in GOP/s (2 per multiply-add, as
FLOPs are counted). What ran: the kernel names in oneDNN's verbose log of one call of each op
(``torch.backends.mkldnn.verbose``, i.e. ``ONEDNN_VERBOSE=1``), e.g. ``brg_conv_fwd:avx512_core_amx``, and
the instruction set they name (:func:`isa_of`: AMX, AVX512_VNNI, AVX512_BF16, AVX512, AVX2_VNNI, AVX2).
"""
from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmarks.harness import autocast, emit, interleaved, parse_args
from ssd_zoo.deploy.cpu import cpu_model, int8_isa

PRECISIONS = ("fp32", "bf16", "int8")
# oneDNN's ISA tags in kernel names, most specific first, and the instruction set each means.
ISA_TAGS = (("amx", "AMX"), ("avx512_core_vnni", "AVX512_VNNI"), ("avx512_core_bf16", "AVX512_BF16"),
            ("avx512_core_fp16", "AVX512_FP16"), ("avx512", "AVX512"), ("avx2_vnni", "AVX2_VNNI"),
            ("avx2", "AVX2"), ("sse41", "SSE4.1"))


def isa_of(kernel: str) -> str:
    """The instruction set a oneDNN kernel name says it uses ("brg_conv_fwd:avx512_core_amx" -> "AMX"), or
    the name itself where it says none (oneDNN's ``gemm_api`` does not)."""
    return next((name for tag, name in ISA_TAGS if tag in kernel), kernel or "unnamed")


def onednn_kernels(fn: Callable[[], Any]) -> list[str]:
    """The implementation names of the oneDNN primitives (reorders left out) that one call of ``fn`` ran, read
    from oneDNN's verbose log, which it prints on file descriptor 1 (captured here, not shown)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                fn()
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
    # onednn_verbose,v1,primitive,exec,cpu,<primitive>,<implementation>,<prop_kind>,...
    fields = [line.split(",") for line in lines if ",primitive,exec," in line]
    return [f[6] or f[5] for f in fields if len(f) > 6 and f[5] != "reorder"]


def ran(fn: Callable[[], Any]) -> str:
    """"<kernel> (<ISA>)" for each distinct oneDNN kernel of one call of ``fn``; "BLAS (MKL), not oneDNN" where
    it ran none (PyTorch's fp32 matmul)."""
    kernels = list(dict.fromkeys(onednn_kernels(fn)))
    if not kernels:
        blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
        return f"BLAS ({blas.group(1) if blas else 'unknown'}), not oneDNN"
    return ", ".join(f"{kernel} ({isa_of(kernel)})" for kernel in kernels)


@dataclass
class Op:
    """One dense op in one precision: ``run()`` computes it, ``flops`` per call (2 per multiply-add)."""

    run: Callable[[], Any]
    flops: int


def dense_ops(precision: str, batch: int, side: int) -> dict[str, Op]:
    """``{"conv": ..., "matmul": ...}`` in ``precision`` ("fp32", "bf16" autocast, "int8" PT2E + oneDNN; int8
    also ``"OpenVINO conv"`` where OpenVINO is installed)."""
    conv = conv_module()
    feature = torch.rand(batch, 512, 38, 38).contiguous(memory_format=torch.channels_last)
    linear = nn.Linear(side, side, bias=False).eval()
    matrix = torch.rand(side, side)
    flops = {"conv": 2 * batch * 38 * 38 * 512 * 512 * 9, "matmul": 2 * side**3}
    if precision == "int8":
        from ssd_zoo.deploy.pt2e import int8_graph

        conv, linear = int8_graph(conv, [feature]), int8_graph(linear, [matrix])
    modules = {"conv": (conv, feature), "matmul": (linear, matrix)}

    def call(module: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode(), autocast("fp32" if precision == "int8" else precision, "cpu"):
                return module(x)
        return run

    ops = {name: Op(call(module, x), flops[name]) for name, (module, x) in modules.items()}
    if precision == "int8":
        openvino = openvino_int8_conv(conv_module(), feature)
        if openvino is not None:
            ops["OpenVINO conv"] = Op(openvino, flops["conv"])
    return ops


def conv_module() -> nn.Module:
    """The 3x3 512->512 convolution (seeded weights), channels_last."""
    torch.manual_seed(0)
    return nn.Conv2d(512, 512, 3, padding=1).eval().to(memory_format=torch.channels_last)


def openvino_int8_conv(conv: nn.Module, feature: torch.Tensor) -> Callable[[], Any] | None:
    """``conv`` quantized by NNCF (calibrated on ``feature``) and compiled by OpenVINO's CPU plugin with per-layer
    counters: a call infers on ``feature``, and ``.kernels()`` names what its convolution ran (OpenVINO's
    ``exec_type``, e.g. ``brgconv_avx512_amx_I8``). None where OpenVINO or NNCF is not installed: int8's peak
    is then PyTorch's alone."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        return None
    graph = ov.convert_model(conv, example_input=feature)
    graph = nncf.quantize(graph, nncf.Dataset([feature.numpy()]), subset_size=1)
    compiled = ov.Core().compile_model(graph, "CPU", {"PERF_COUNT": True})
    request, array = compiled.create_infer_request(), feature.contiguous().numpy()

    def run() -> Any:
        return request.infer({0: array})

    def kernels() -> str:
        return ", ".join(sorted({p.exec_type for p in request.get_profiling_info() if "Convolution" in p.node_type}))

    run.kernels = kernels  # type: ignore[attr-defined]
    return run


def sizes(quick: bool) -> tuple[int, int]:
    """``(conv batch, matmul side)``: the full run's, or the smoke run's."""
    return (2, 1024) if quick else (8, 4096)


def measure(precision: str, batch: int, side: int, repeat: int, warmup: int,
            others: dict[str, Callable[[], Any]] | None = None
            ) -> tuple[dict[str, float], dict[str, str], dict[str, float]]:
    """``(GOP/s per op, what ran per op, seconds per call of each of others)``: the ops of ``precision``
    timed interleaved with ``others`` (e.g. the network paths whose share of this peak is wanted)."""
    ops = dense_ops(precision, batch, side)
    for op in ops.values():
        op.run()  # the first call packs weights and creates the primitives: not what is timed, nor logged
    kernels = {name: op.run.kernels() if hasattr(op.run, "kernels") else ran(op.run) for name, op in ops.items()}
    times = interleaved({**{name: op.run for name, op in ops.items()}, **(others or {})}, repeat=repeat,
                        warmup=warmup)
    rates = {name: op.flops / times[name] / 1e9 for name, op in ops.items()}
    return rates, kernels, {name: times[name] for name in others or {}}


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=5, warmup=1)
    if args.device != "cpu":
        raise SystemExit(f"benchmarks.peak measures a CPU; found --device {args.device} (see benchmarks.roofline)")
    batch, side = sizes(args.quick)
    capability = torch.backends.cpu.get_cpu_capability()
    rows = []
    for precision in PRECISIONS:
        rates, kernels, _ = measure(precision, batch, side, args.repeat, args.warmup)
        best = max(rates, key=rates.get)
        rows.append({"benchmark": f"CPU peak ({cpu_model()}; int8 ISA {int8_isa()}, PyTorch kernels {capability})",
                     "case": f"{precision}: 3x3 512->512 conv at 38x38, batch {batch}; {side}^2 matmul",
                     "ssd_zoo": f"peak {rates[best]:.0f} GOP/s ({best})",
                     "alternative": ", ".join(f"{name} {rate:.0f}" for name, rate in rates.items()) + " GOP/s",
                     "speed-up": "", "target": "",
                     "outputs": "; ".join(f"{name} ran {kernels[name]}" for name in rates)})
    emit(rows, args.json)


if __name__ == "__main__":
    main()
