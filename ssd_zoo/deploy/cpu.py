"""What this CPU can do for int8 and bf16: its instruction sets, read from ``/proc/cpuinfo``.

    >>> int8_isa()          # "AMX", "AVX512_VNNI", "AVX_VNNI", "AVX512" or "AVX2" (or "none")
    >>> cpu_kind()          # "AMX", "VNNI" or "none": the key of ssd_zoo.deploy.quantize's choice table

An int8 multiply-add runs at very different rates by instruction set: AMX's tile multiply (``amx_int8``) does
a 16x64 by 64x16 int8 block per instruction, AVX-512 VNNI (``avx512_vnni``) or AVX-VNNI (``avx_vnni``, 256
bit) a dot product of four u8 x s8 pairs per 32-bit lane, and without VNNI the pairs go through ``vpmaddubsw``
(two instructions, an int16 sum that can saturate). oneDNN and OpenVINO pick their kernels by these flags;
``torch.backends.cpu.get_cpu_capability()`` names only the vector width PyTorch's own kernels use
("AVX512", "AVX2"), not VNNI or AMX.
"""
from __future__ import annotations

from functools import lru_cache

# The flags that name an int8 instruction set, fastest first; the first one this CPU has names it.
INT8_ISAS = (("amx_int8", "AMX"), ("avx512_vnni", "AVX512_VNNI"), ("avx_vnni", "AVX_VNNI"),
             ("avx512f", "AVX512"), ("avx2", "AVX2"))


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The ``flags`` of the first processor in ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((line for line in f if line.startswith("flags")), "").partition(":")[2].split())
    except OSError:
        return frozenset()


def int8_isa(flags: frozenset[str] | None = None) -> str:
    """The fastest int8 instruction set of ``flags`` (default: this CPU's): "AMX", "AVX512_VNNI",
    "AVX_VNNI", "AVX512", "AVX2", or "none"."""
    flags = cpu_flags() if flags is None else flags
    return next((name for flag, name in INT8_ISAS if flag in flags), "none")


def has_vnni(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has int8 dot-product instructions (AMX CPUs all have AVX-512 VNNI too).

    Without them, oneDNN multiplies u8 x s8 pairs with ``vpmaddubsw``, whose int16 sum can saturate; 7-bit
    activations (``reduce_range``) avoid that, as torchao's X86InductorQuantizer advises."""
    return int8_isa(flags) in ("AMX", "AVX512_VNNI", "AVX_VNNI")


def cpu_kind(flags: frozenset[str] | None = None) -> str:
    """"AMX", "VNNI" (AVX-512 VNNI or AVX-VNNI, no AMX) or "none": the kinds int8 speed was measured on."""
    isa = int8_isa(flags)
    return "AMX" if isa == "AMX" else "VNNI" if has_vnni(flags) else "none"


def cpu_model() -> str:
    """The ``model name`` of ``/proc/cpuinfo`` (e.g. "AMD EPYC 9R14"), or "unknown CPU"."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("model name")), "")
    except OSError:
        line = ""
    return line.partition(":")[2].strip() or "unknown CPU"
