"""Static post-training int8 quantization of an SSD's network with PyTorch's PT2E flow (torchao).

    >>> qmodel = ssd_zoo.deploy.quantize(model, calibration_images)   # list of float [3, H, W] in [0, 1]
    >>> detections = qmodel([image])                           # the model's own I/O contract

The backbone and the head are each captured with ``torch.export`` (for one image, see :class:`_PerImage`), annotated by
torchao's ``X86InductorQuantizer`` (int8 activations per tensor, int8 weights per output channel, symmetric),
observed on the calibration images (``prepare_pt2e``), converted (``convert_pt2e``) and lowered by torchao's
``lower_pt2e_quantized_to_x86`` (Inductor's freezing passes and constant folding), which turns each int8
convolution into oneDNN's kernel on a weight packed once. The result is a copy of the SSD whose ``backbone`` and
``head`` are these lowered graphs: resizing, normalisation, default boxes, decoding
and NMS are the float model's, unchanged, so ``forward`` and ``dense_predictions`` keep their contract.

Modules named in ``keep_float`` (e.g. ``"head"``, ``"backbone.features.conv1_1"``) stay in float32.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ssd_zoo.errors import require
from ssd_zoo.files import read_image
from ssd_zoo.models.ssd import SSD

def _torchao() -> tuple[Any, Any, Any]:
    """torchao's PT2E modules ``(quantize_pt2e, x86_inductor_quantizer, lowering)``, or ImportError naming the
    install command."""
    pt2e = "torchao.quantization.pt2e"
    return (require(f"{pt2e}.quantize_pt2e", "int8"), require(f"{pt2e}.quantizer.x86_inductor_quantizer", "int8"),
            require(f"{pt2e}.lowering", "int8"))


def has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX-512 VNNI or AVX-VNNI), read from /proc/cpuinfo.

    Without them, oneDNN multiplies u8 x s8 pairs with ``vpmaddubsw``, whose int16 sum can saturate; 7-bit
    activations (``reduce_range``) avoid that, as torchao's X86InductorQuantizer advises."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


class _PerImage(nn.Module):
    """A graph exported and lowered for batch 1, run image by image on a batch: ``[B, ...] -> [B, ...]``
    (each output, or each tensor of a list output, concatenated along the batch axis).

    One batch size, because the lowering folds the int8 weight packing in a graph exported with static shapes;
    one image at a time, because a static graph per batch size would be exported, calibrated and lowered again
    for each. A 300x300 image's convolutions are large enough to keep the int8 kernels busy at batch 1."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def train(self, mode: bool = True) -> _PerImage:
        """Only this wrapper's flag: an exported graph is inference-only and refuses ``train()``/``eval()``."""
        self.training = mode
        return self

    def forward(self, inputs: Tensor | list[Tensor]) -> Any:
        batch = len(inputs) if isinstance(inputs, Tensor) else len(inputs[0])
        parts = [self.graph(inputs[i:i + 1] if isinstance(inputs, Tensor) else [x[i:i + 1] for x in inputs])
                 for i in range(batch)]
        if isinstance(parts[0], Tensor):
            return torch.cat(parts)
        return type(parts[0])(torch.cat(level) for level in zip(*parts))


def _quantize_module(module: nn.Module, examples: list[Any], keep_float: Sequence[str], prefix: str,
                     reduce_range: bool, compile: bool) -> nn.Module:
    """Export ``module`` for one image (``module(example)``, batch 1), insert int8 observers, calibrate on
    each image of ``examples``, convert, and lower to oneDNN's int8 kernels. ``keep_float``: names within the model."""
    quantize_pt2e, xiq, lowering = _torchao()
    singles = [x[i:i + 1] if isinstance(x, Tensor) else [level[i:i + 1] for level in x]
               for x in examples for i in range(len(x) if isinstance(x, Tensor) else len(x[0]))]
    graph = torch.export.export(module, (singles[0],)).module()
    quantizer = xiq.X86InductorQuantizer().set_global(
        xiq.get_default_x86_inductor_quantization_config(reduce_range=reduce_range))
    for name in keep_float:
        if name.startswith(prefix + "."):
            quantizer.set_module_name_qconfig(name[len(prefix) + 1:], None)
    prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for example in singles:
            prepared(example)
    converted = quantize_pt2e.convert_pt2e(prepared)
    if not compile:
        return _PerImage(converted)
    # Inductor's freezing passes, then constant folding: each int8 conv becomes onednn.qconv_pointwise on a weight
    # packed once. (torch.compile(freezing=True) fails on torch 2.14 + torchao 0.18: the packing op has no fake
    # kernel, "UnsupportedOperatorException: onednn.qconv_prepack".)
    with torch.no_grad():
        return _PerImage(lowering.lower_pt2e_quantized_to_x86(converted, (singles[0],)))


@torch.no_grad()
def quantize(model: SSD, calibration_images: Sequence[Tensor], *, batch_size: int = 8,
             keep_float: Sequence[str] = (), reduce_range: bool | None = None, compile: bool = True) -> SSD:
    """An int8 copy of ``model`` (float32, CPU), calibrated on ``calibration_images``; ``model`` is unchanged.

    Args:
        model: an ssd_zoo ``SSD``.
        calibration_images: float ``[3, H, W]`` images in [0, 1] (a few dozen photos like the ones it will
            see); the activation ranges are their min/max, per tensor.
        batch_size: images per calibration pass.
        keep_float: module names of ``model`` that stay float32: ``"head"`` or ``"backbone"`` as a whole, or
            a layer such as ``"backbone.features.conv1_1"`` or ``"head.classification.0"``.
        reduce_range: 7-bit activations; default: only on a CPU without VNNI (see :func:`has_vnni`).
        compile: lower the graphs to oneDNN's int8 kernels. Without it the converted graphs run as reference
            int8 (quantize/dequantize around float ops): the same numbers, slowly; for inspection.

    Returns:
        An ``SSD`` whose ``backbone`` and ``head`` are the int8 graphs, with the input transform, default
        boxes, thresholds, categories and record of ``model``; call it in eval mode, like ``model``.
    """
    if not isinstance(model, SSD):
        raise TypeError(f"quantize: expected an ssd_zoo SSD, found {type(model).__name__}")
    images = list(calibration_images)
    if not images:
        raise ValueError("quantize: expected calibration images (a few dozen photos), found none")
    unknown = [name for name in keep_float if name not in dict(model.named_modules())]
    if unknown:
        raise ValueError(f"quantize: keep_float names {unknown} are not modules of the model (e.g. 'head', "
                         "'backbone.features.conv1_1')")
    reduce_range = not has_vnni() if reduce_range is None else reduce_range
    qmodel = copy.deepcopy(model).eval().cpu().float()
    inputs = [qmodel.transform(images[i:i + batch_size]).images for i in range(0, len(images), batch_size)]
    features = [qmodel.backbone(x) for x in inputs]  # the float model's: what the head is calibrated on
    if "backbone" not in keep_float:
        qmodel.backbone = _quantize_module(qmodel.backbone, inputs, keep_float, "backbone", reduce_range, compile)
    if "head" not in keep_float:
        qmodel.head = _quantize_module(qmodel.head, features, keep_float, "head", reduce_range, compile)
    return qmodel


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
