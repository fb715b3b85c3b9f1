"""Static int8 of an SSD's network with PyTorch's PT2E flow (torchao), lowered to oneDNN, for any batch size.

    >>> qmodel = pt2e_int8(model, calibration_images)     # what ssd_zoo.quantize(..., backend="pt2e") returns
    >>> detections = qmodel(images)                        # the model's own I/O contract, one pass per batch

The backbone and the head are each captured with ``torch.export`` with a dynamic batch axis, annotated by
torchao's ``X86InductorQuantizer`` (int8 activations per tensor, int8 weights per output channel, symmetric),
observed on the calibration batches (``prepare_pt2e``), converted (``convert_pt2e``) and lowered: exported
again, still batch-dynamic, and rewritten by Inductor's freezing passes and constant folding, which turn each
int8 convolution into oneDNN's kernel (``onednn.qconv_pointwise``) on a weight packed once. One graph serves
every batch size, so a batch of N images is one pass of N, never N passes of one. (A static shape would let
the packing pick a layout for it; with the batch unknown it packs for the weights alone, and oneDNN's
verbose log shows the same kernels on the same packed layout, no reorder per call, on an AVX-512 VNNI CPU.)

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

def _torchao() -> tuple[Any, Any]:
    """torchao's PT2E modules ``(quantize_pt2e, x86_inductor_quantizer)``, or ImportError naming the install
    command."""
    pt2e = "torchao.quantization.pt2e"
    return require(f"{pt2e}.quantize_pt2e", "int8"), require(f"{pt2e}.quantizer.x86_inductor_quantizer", "int8")


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


def _batch_axis(example: Tensor | list[Tensor]) -> tuple[Any, ...]:
    """``dynamic_shapes`` for ``module(example)``: axis 0 of the tensor (or of each tensor of the list) is the batch."""
    batch = torch.export.Dim("batch", min=1)
    return ({0: batch},) if isinstance(example, Tensor) else ([{0: batch} for _ in example],)


def _at_least_two(example: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
    """``example`` doubled along the batch axis: torch.export specialises a batch of one to the constant 1."""
    return torch.cat([example, example]) if isinstance(example, Tensor) else [torch.cat([x, x]) for x in example]


def _lower(converted: nn.Module, example: Tensor | list[Tensor]) -> nn.Module:
    """torchao's ``lower_pt2e_quantized_to_x86`` with the batch axis kept dynamic: export (strict), the
    post-autograd decompositions, Inductor's freezing passes (int8 conv -> ``onednn.qconv_pointwise`` on a
    weight packed by ``onednn.qconv_prepack``), constant folding (the packing runs here, once)."""
    from torch._inductor.constant_folding import constant_fold
    from torch._inductor.fx_passes.freezing_patterns import freezing_passes

    decompositions = {op: fn for op, fn in torch.export.default_decompositions().items()
                      if torch._export.utils._is_cia_op(op)}  # post-autograd: leave the prim ops alone
    graph = torch.export.export(converted, (example,), dynamic_shapes=_batch_axis(example), strict=True)
    graph = graph.run_decompositions(decompositions).module()
    for node in list(graph.graph.nodes):  # the freezing patterns expect permute where aten.t stands
        if node.target == torch.ops.aten.t.default:
            with graph.graph.inserting_before(node):
                node.replace_all_uses_with(graph.graph.call_function(torch.ops.aten.permute.default,
                                                                     (node.args[0], [1, 0])))
            graph.graph.erase_node(node)
    graph.recompile()
    freezing_passes(graph, (example,))
    constant_fold(graph)
    return graph


@torch.no_grad()
def int8_graph(module: nn.Module, batches: list[Any], *, keep_float: Sequence[str] = (), prefix: str = "",
               reduce_range: bool | None = None, compile: bool = True) -> nn.Module:
    """``module`` (float32, eval, CPU; batch-first input: a tensor or a list of tensors) as a batch-dynamic
    int8 graph: exported, observed on ``batches`` (inputs of ``module``), converted and (``compile``) lowered to
    oneDNN's int8 kernels. ``keep_float``: module names, within the model whose ``prefix`` submodule
    ``module`` is, that stay float32. ``reduce_range`` default: only on a CPU without VNNI."""
    reduce_range = not has_vnni() if reduce_range is None else reduce_range
    quantize_pt2e, xiq = _torchao()
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
    return _Inference(_lower(converted, example) if compile else converted)


@torch.no_grad()
def pt2e_int8(model: SSD, calibration_images: Sequence[Tensor], *, batch_size: int = 8,
              keep_float: Sequence[str] = (), reduce_range: bool | None = None, compile: bool = True) -> SSD:
    """An int8 copy of ``model`` (float32, CPU), calibrated on ``calibration_images``; ``model`` is unchanged.

    Args: as :func:`ssd_zoo.deploy.quantize.quantize` (``reduce_range`` default: only on a CPU without VNNI,
    :func:`ssd_zoo.deploy.cpu.has_vnni`; ``compile=False``: the converted graphs run as reference int8,
    quantize/dequantize around float ops: the same numbers, slowly; for inspection).

    Returns:
        An ``SSD`` whose ``backbone`` and ``head`` are batch-dynamic int8 graphs, with the input transform,
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
