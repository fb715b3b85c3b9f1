"""Static int8 of an SSD's network with PyTorch's PT2E flow (torchao), lowered to oneDNN, for any batch size.

    >>> qmodel = pt2e_int8(model, calibration_images)     # what ssd_zoo.quantize(..., backend="pt2e") returns
    >>> detections = qmodel(images)                        # the model's own I/O contract, one pass per batch

The backbone and the head are each captured with ``torch.export`` with a dynamic batch axis, annotated by
torchao's ``X86InductorQuantizer`` (int8 activations per tensor, int8 weights per output channel, symmetric),
observed on the calibration batches (``prepare_pt2e``) and converted (``convert_pt2e``), once. Each batch size
is then lowered on its first use, and kept: torchao's ``lower_pt2e_quantized_to_x86`` (Inductor's freezing
passes and constant folding) turns each int8 convolution into oneDNN's kernel (``onednn.qconv_pointwise``) on
a weight packed once for that input shape. A batch of N images is one pass of N, never N passes of one. (A
graph lowered with the batch axis left dynamic serves every size, but its weights are packed for no shape in
particular: in a rough check on a busy 2-core EPYC with AVX-512 VNNI, one thread, interleaved, SSD300-VGG16's
backbone took 1.48 s per batch of 2 that way against 1.22 s lowered for the batch size; the same graph ran image
by image took 1.50 s, so the packing, not the batching, made the difference.)

The result is a copy of the SSD whose ``backbone`` and ``head`` are these graphs: resizing, normalisation,
default boxes, decoding and NMS are the float model's, unchanged, so ``forward`` and ``dense_predictions``
keep their contract. Modules named in ``keep_float`` (e.g. ``"head"``, ``"backbone.features.conv1_1"``) stay
in float32.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ssd_zoo.deploy.cpu import has_vnni
from ssd_zoo.errors import require
from ssd_zoo.models.ssd import SSD


def _torchao() -> tuple[Any, Any, Any]:
    """torchao's PT2E modules ``(quantize_pt2e, x86_inductor_quantizer, lowering)``, or ImportError naming the
    install command."""
    pt2e = "torchao.quantization.pt2e"
    return (require(f"{pt2e}.quantize_pt2e", "int8"), require(f"{pt2e}.quantizer.x86_inductor_quantizer", "int8"),
            require(f"{pt2e}.lowering", "int8"))


class _Inference(nn.Module):
    """An exported graph as a submodule that ``model.eval()`` / ``model.train()`` may visit: an exported graph
    is inference-only and refuses ``train()``/``eval()``, so only this wrapper's flag changes."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def train(self, mode: bool = True) -> _Inference:
        self.training = mode
        return self

    def forward(self, inputs: Tensor | list[Tensor]) -> Any:
        return self.graph(inputs)


class _LoweredPerBatchSize(_Inference):
    """A converted int8 graph (batch-dynamic, calibrated) lowered to oneDNN for each batch size on its first
    use: ``lowered[str(batch size)]``, kept for the next batch of that size. Inputs: a tensor ``[B, ...]`` or a
    list of them (the head's feature maps), B the batch size."""

    def __init__(self, converted: nn.Module) -> None:
        super().__init__(converted)
        self.lowered = nn.ModuleDict()

    def forward(self, inputs: Tensor | list[Tensor]) -> Any:
        key = str(len(inputs) if isinstance(inputs, Tensor) else len(inputs[0]))
        if key not in self.lowered:
            with torch.no_grad():  # freezing folds the weights into constants: no autograd graph to keep
                self.lowered[key] = _torchao()[2].lower_pt2e_quantized_to_x86(self.graph, (inputs,))
        return self.lowered[key](inputs)


def _batch_axis(example: Tensor | list[Tensor]) -> tuple[Any, ...]:
    """``dynamic_shapes`` for ``module(example)``: axis 0 of the tensor (or of each tensor of the list) is the batch."""
    batch = torch.export.Dim("batch", min=1)
    return ({0: batch},) if isinstance(example, Tensor) else ([{0: batch} for _ in example],)


def _at_least_two(example: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
    """``example`` doubled along the batch axis: torch.export specialises a batch of one to the constant 1."""
    return torch.cat([example, example]) if isinstance(example, Tensor) else [torch.cat([x, x]) for x in example]


@torch.no_grad()
def int8_graph(module: nn.Module, batches: list[Any], *, keep_float: Sequence[str] = (), prefix: str = "",
               reduce_range: bool | None = None, compile: bool = True) -> nn.Module:
    """``module`` (float32, eval, CPU; batch-first input: a tensor or a list of tensors) as an int8 graph for
    any batch size: exported, observed on ``batches`` (inputs of ``module``), converted and (``compile``) lowered
    to oneDNN's int8 kernels for each batch size on its first use. ``keep_float``: module names, within the model whose ``prefix`` submodule
    ``module`` is, that stay float32. ``reduce_range`` default: only on a CPU without VNNI."""
    reduce_range = not has_vnni() if reduce_range is None else reduce_range
    quantize_pt2e, xiq, _ = _torchao()
    example = _at_least_two(batches[0])
    graph = torch.export.export(module, (example,), dynamic_shapes=_batch_axis(example)).module()
    quantizer = xiq.X86InductorQuantizer().set_global(
        xiq.get_default_x86_inductor_quantization_config(reduce_range=reduce_range))
    for name in keep_float:
        if prefix and name.startswith(prefix + "."):
            quantizer.set_module_name_qconfig(name[len(prefix) + 1:], None)
    prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
    for batch in batches:  # the activation observers (a histogram per tensor) see every image
        prepared(batch)
    converted = quantize_pt2e.convert_pt2e(prepared)
    return _LoweredPerBatchSize(converted) if compile else _Inference(converted)


@torch.no_grad()
def pt2e_int8(model: SSD, calibration_images: Sequence[Tensor], *, batch_size: int = 8,
              keep_float: Sequence[str] = (), reduce_range: bool | None = None, compile: bool = True) -> SSD:
    """An int8 copy of ``model`` (float32, CPU), calibrated on ``calibration_images``; ``model`` is unchanged.

    Args: as :func:`ssd_zoo.deploy.quantize.quantize` (``reduce_range`` default: only on a CPU without VNNI,
    :func:`ssd_zoo.deploy.cpu.has_vnni`; ``compile=False``: the converted graphs run as reference int8,
    quantize/dequantize around float ops: the same numbers, slowly; for inspection).

    Returns:
        An ``SSD`` whose ``backbone`` and ``head`` are int8 graphs for any batch size, with the input transform,
        default boxes, thresholds, categories and record of ``model``; call it in eval mode, like ``model``.
    """
    unknown = [name for name in keep_float if name not in dict(model.named_modules())]
    if unknown:
        raise ValueError(f"quantize: keep_float names {unknown} are not modules of the model (e.g. 'head', "
                         "'backbone.features.conv1_1')")
    qmodel = copy.deepcopy(model).eval().cpu().float()
    images = list(calibration_images)
    inputs = [qmodel.transform(images[i:i + batch_size]).images for i in range(0, len(images), batch_size)]
    features = [qmodel.backbone(x) for x in inputs]  # the float model's: what the head is calibrated on
    if "backbone" not in keep_float:
        qmodel.backbone = int8_graph(qmodel.backbone, inputs, keep_float=keep_float, prefix="backbone",
                                     reduce_range=reduce_range, compile=compile)
    if "head" not in keep_float:
        qmodel.head = int8_graph(qmodel.head, features, keep_float=keep_float, prefix="head",
                                 reduce_range=reduce_range, compile=compile)
    return qmodel
