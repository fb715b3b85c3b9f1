"""Int8 for this CPU: ``ssd_zoo.quantize`` builds the fastest int8 model the machine can run, and says why.

    >>> qmodel = ssd_zoo.quantize(model, calibration_images)   # list of float [3, H, W] in [0, 1]
    >>> qmodel.quantized_with                                # {"backend": "openvino", "reason": "..."}
    >>> detections = qmodel(images)                          # the model's own I/O contract, eval mode

Three backends, each static int8 (activations per tensor, weights per output channel) calibrated on the
images, each running a batch as one batch:

- ``"openvino"``: the whole SSD exported to OpenVINO IR with decoding and NMS inside, its convolutions
  quantized by NNCF, compiled in memory by OpenVINO's CPU plugin (the file is written to a temporary folder
  and removed); returned as a :class:`~ssd_zoo.deploy.runtime.DeployedSSD`. Needs ``ssd_zoo[openvino]``.
- ``"pt2e"``: PyTorch's PT2E flow (torchao), the backbone and head lowered to oneDNN's int8 kernels, the
  rest the float model's (:mod:`ssd_zoo.deploy.pt2e`); returned as an ``SSD``. Needs ``ssd_zoo[int8]``.
- ``"onnxruntime"``: the ONNX graph with QDQ int8 convolutions in ONNX Runtime; a ``DeployedSSD``. Needs
  ``ssd_zoo[export]``.

``backend="auto"`` takes the first installed backend of :data:`PREFERENCE` for this CPU's kind
(:func:`ssd_zoo.deploy.cpu.cpu_kind`: AMX, VNNI or none), a table of measured speed-ups.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from ssd_zoo.deploy.cpu import cpu_kind, int8_isa
from ssd_zoo.files import read_image
from ssd_zoo.models.ssd import SSD


@dataclass(frozen=True)
class Backend:
    """An int8 backend: the modules it imports and the ``ssd_zoo[extra]`` that installs them."""

    modules: tuple[str, ...]
    extra: str

    def installed(self) -> bool:
        """Whether every module can be imported (one set to None in ``sys.modules`` cannot: import raises)."""
        return all(sys.modules[name] is not None if name in sys.modules else importlib.util.find_spec(name) is not None
                   for name in self.modules)


BACKENDS = {"openvino": Backend(("openvino", "nncf", "onnx"), "openvino"),
            "pt2e": Backend(("torchao",), "int8"),
            "onnxruntime": Backend(("onnxruntime", "onnx"), "export")}

# Backends fastest first per CPU kind, and the measurement that orders them: SSD300-VGG16, end to end
# (model(images), batch 8 of 500x375 photos, `python -m benchmarks.deploy`), speed-up over torchvision fp32
# in the same process; torch 2.14.1, OpenVINO 2026.4, ONNX Runtime 1.32 (issue 25).
PREFERENCE: dict[str, tuple[tuple[str, ...], str]] = {
    "AMX": (("openvino", "pt2e", "onnxruntime"),
            "measured on a 2-core Xeon with AMX: OpenVINO int8 8.5x torchvision fp32, PT2E int8 3.7x, "
            "ONNX Runtime int8 1.25x"),
    "VNNI": (("openvino", "pt2e", "onnxruntime"),  # and docs/benchmarks.md's table
             "measured on a 2-core EPYC with AVX-512 VNNI: OpenVINO int8 6.2x torchvision fp32, PT2E int8 3.7x, "
             "ONNX Runtime int8 1.6x"),
    "none": (("openvino", "pt2e", "onnxruntime"),
             "not measured on a CPU without VNNI; the order measured on AMX and VNNI CPUs"),
}


def choose_backend(kind: str | None = None, installed: Sequence[str] | None = None,
                   among: Sequence[str] = tuple(BACKENDS)) -> tuple[str, str]:
    """``(backend, reason)``: the first of ``among`` that is installed (``installed``, default: those whose
    modules are there) in :data:`PREFERENCE`'s order for ``kind`` (default: this CPU's kind), and why.
    ImportError naming the extras when none is. ``among=("openvino", "onnxruntime")``: those that write a file."""
    here = kind is None
    kind = cpu_kind() if here else kind
    order, measured = PREFERENCE[kind]
    order = tuple(name for name in order if name in among)
    installed = [name for name in order if BACKENDS[name].installed()] if installed is None else installed
    missing = {name: f"{name} not installed (pip install 'ssd_zoo[{BACKENDS[name].extra}]')" for name in order
               if name not in installed}
    chosen = next((name for name in order if name in installed), None)
    if chosen is None:
        raise ImportError(f"quantize: expected one of the int8 backends {', '.join(order)} installed, found none: "
                          f"{'; '.join(missing.values())}")
    skipped = [missing[name] for name in order[:order.index(chosen)]]
    cpu = f"this {kind} CPU ({int8_isa()})" if here else f"a {kind} CPU"
    return chosen, f"fastest installed on {cpu}: {measured}" + "".join(f"; {text}" for text in skipped)


def quantize(model: SSD, calibration_images: Sequence[Tensor], *, backend: str = "auto", batch_size: int = 8,
             keep_float: Sequence[str] = (), reduce_range: bool | None = None, compile: bool = True) -> nn.Module:
    """An int8 model made from ``model`` (an ssd_zoo ``SSD``; unchanged), calibrated on ``calibration_images``.

    Args:
        model: an ssd_zoo ``SSD``.
        calibration_images: float ``[3, H, W]`` images in [0, 1] (a few dozen photos like the ones it will
            see); each activation's range, per tensor, comes from them.
        backend: "auto" (:func:`choose_backend`), "openvino", "pt2e" or "onnxruntime".
        batch_size: images per calibration pass (PT2E; the exported backends calibrate in batches of 8).
        keep_float: (PT2E only) module names of ``model`` that stay float32: ``"head"`` or ``"backbone"`` as a
            whole, or a layer such as ``"backbone.features.conv1_1"`` or ``"head.classification.0"``.
        reduce_range: (PT2E only) 7-bit activations; default: only on a CPU without VNNI.
        compile: (PT2E only) lower the graphs to oneDNN's int8 kernels; False: reference int8, for inspection.
        With a PT2E-only option set, "auto" means "pt2e".

    Returns:
        A module in eval mode with the model's I/O contract (``qmodel(images)`` -> per image ``boxes``,
        ``scores``, ``labels`` in its own pixels; ``categories``, ``class_names``, ``input_size``,
        ``thresholds``, ``record()``): an ``SSD`` for "pt2e", a :class:`~ssd_zoo.deploy.runtime.DeployedSSD`
        otherwise. Its ``quantized_with`` is ``{"backend": ..., "reason": ...}``, also in its ``repr``.
    """
    if not isinstance(model, SSD):
        raise TypeError(f"quantize: expected an ssd_zoo SSD, found {type(model).__name__}")
    images = list(calibration_images)
    if not images:
        raise ValueError("quantize: expected calibration images (a few dozen photos), found none")
    given = {"keep_float": bool(keep_float), "reduce_range": reduce_range is not None, "compile": not compile}
    backend, reason = _resolve(backend, [name for name, is_given in given.items() if is_given])
    quantized_with = {"backend": backend, "reason": reason}
    if backend == "pt2e":
        from ssd_zoo.deploy.pt2e import pt2e_int8

        qmodel = pt2e_int8(model, images, batch_size=batch_size, keep_float=keep_float, reduce_range=reduce_range,
                           compile=compile)
        qmodel.quantized_with = quantized_with
        return qmodel
    return _exported_int8(model, images, backend, quantized_with)


def _resolve(backend: str, pt2e_options: list[str]) -> tuple[str, str]:
    """``(backend, reason)`` for ``quantize(backend=...)``; ``pt2e_options``: the PT2E-only options given."""
    if backend == "auto":
        return ("pt2e", f"asked for {', '.join(pt2e_options)}, which only PT2E has") if pt2e_options \
            else choose_backend()
    if backend not in BACKENDS:
        raise ValueError(f"quantize: expected backend 'auto' or one of {', '.join(BACKENDS)}, found {backend!r}")
    if pt2e_options and backend != "pt2e":
        raise ValueError(f"quantize: {', '.join(pt2e_options)} apply to backend 'pt2e' only, found backend={backend!r}")
    if not BACKENDS[backend].installed():
        raise ImportError(f"quantize: backend {backend!r} needs {', '.join(BACKENDS[backend].modules)}; install "
                          f"them with pip install 'ssd_zoo[{BACKENDS[backend].extra}]'")
    return backend, "asked for (backend=)"


def _exported_int8(model: SSD, images: list[Tensor], backend: str, quantized_with: dict[str, str]) -> nn.Module:
    """``export(..., int8=True)`` into a temporary folder, loaded (compiled in memory), the folder removed."""
    from ssd_zoo.deploy.export import export
    from ssd_zoo.deploy.runtime import DeployedSSD, load_runner

    fmt, suffix = ("openvino", ".xml") if backend == "openvino" else ("onnx", ".onnx")
    with tempfile.TemporaryDirectory(prefix="ssd_zoo_int8_") as folder:
        path = export(model, Path(folder) / f"model{suffix}", format=fmt, int8=True, calibration_images=images)
        runner = load_runner(path, backend)
    return DeployedSSD(runner, quantized_with)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_calibration_images(folder: str | os.PathLike, count: int = 32) -> list[Tensor]:
    """The first ``count`` images (by name) of ``folder`` (and its subfolders) as float ``[3, H, W]`` in [0, 1].

    Raises FileNotFoundError for a folder without images, ValueError naming an image that cannot be read."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration images: expected a folder of photos, found nothing at {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    if not paths:
        raise FileNotFoundError(f"calibration images: no {'/'.join(IMAGE_SUFFIXES)} files in {root}")
    return [read_image(path) for path in paths]
