"""torch.compile sees the network part (backbone + head) of every registered model as one graph, no breaks.

Graph breaks are allowed only in the transform and the post-processing, whose output sizes depend on the data.
Only dynamo's tracing runs here (``torch._dynamo.explain``), not inductor's code generation.
"""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
from helpers import BUILD_KWARGS, NUM_CLASSES

import ssd_zoo


@pytest.mark.parametrize("name", ssd_zoo.list_models())
def test_backbone_and_head_compile_without_graph_breaks(name: str, built) -> None:
    if "vgg" not in name:
        pytest.importorskip("timm")
    model = built(name, num_classes=NUM_CLASSES, **BUILD_KWARGS.get(name, {})).eval()
    size = model.input_size
    images = torch.rand(1, 3, size, size).contiguous(memory_format=torch.channels_last)

    def network(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return model.head(model.backbone(x))

    torch._dynamo.reset()
    with torch.no_grad():
        explanation = torch._dynamo.explain(network)(images)
    reasons = [str(reason.reason).splitlines()[0] for reason in explanation.break_reasons]
    assert explanation.graph_break_count == 0, f"{name}: graph breaks in backbone + head: {reasons}"
    assert explanation.graph_count == 1


def test_a_compiled_model_compiles_once(built) -> None:
    """The second call reuses the first's graphs: nothing the first call changes (such as a cache) is guarded on."""
    from torch._dynamo.testing import CompileCounter

    model = built("ssd300_vgg16", num_classes=NUM_CLASSES).eval()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter)
    images = [torch.rand(3, 60, 80)]
    torch._dynamo.reset()
    with torch.no_grad():
        first = compiled(images)
        frames = counter.frame_count
        second = compiled(images)
    assert counter.frame_count == frames, f"recompiled: {frames} frames after one call, {counter.frame_count} after two"
    assert torch.equal(first[0]["boxes"], second[0]["boxes"])
