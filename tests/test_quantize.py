"""Int8 (ssd_zoo.quantize): the backend chosen by the measured table and said why, the model's I/O contract
kept, a batch run as one batch, detections close to float32, clear errors."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_detector
from torch import nn

import ssd_zoo
from ssd_zoo.models.vgg import CeilMaxPool2d
from ssd_zoo.deploy.cpu import cpu_kind, has_vnni, int8_isa
from ssd_zoo.deploy.quantize import BACKENDS, PREFERENCE, choose_backend, quantize, read_calibration_images
from ssd_zoo.deploy.runtime import DeployedSSD

pytest.importorskip("torchao")
pytest.importorskip("timm")

def tiny_model() -> ssd_zoo.SSD:
    """A small trained-looking SSD (helpers.tiny_detector): scores spread over the classes."""
    return tiny_detector()


@pytest.mark.parametrize("size", [75, 76, 9])
def test_ceil_max_pool_equals_ceil_mode(size: int) -> None:
    x = torch.randn(2, 4, size, size + 1)
    assert torch.equal(CeilMaxPool2d()(x), nn.MaxPool2d(2, 2, ceil_mode=True)(x))


@pytest.fixture(scope="session")
def float_model() -> ssd_zoo.SSD:
    return tiny_model()


@pytest.fixture(scope="session")
def pt2e_model(float_model, sample_images) -> ssd_zoo.SSD:
    """PT2E int8, lowered to oneDNN's int8 kernels; calibrated in batches of 4 (another size than the tests use)."""
    return quantize(float_model, sample_images * 4, backend="pt2e", batch_size=4)


@pytest.fixture(scope="session")
def auto_model(float_model, sample_images) -> torch.nn.Module:
    """What ssd_zoo.quantize chooses on this machine by itself."""
    return quantize(float_model, sample_images)


def test_int8_keeps_contract_and_agrees_with_fp32(float_model, pt2e_model, sample_images) -> None:
    model, qmodel = float_model, pt2e_model
    assert qmodel is not model and qmodel.categories == model.categories and qmodel.record() == model.record()
    assert qmodel.quantized_with == {"backend": "pt2e", "reason": "asked for (backend=)"}
    assert "quantized_with={'backend': 'pt2e'" in repr(qmodel).splitlines()[1]
    with torch.no_grad():
        ref, dense = model.dense_predictions(sample_images), qmodel.dense_predictions(sample_images)
        detections = qmodel(sample_images[:2])  # another batch size than calibration
    assert dense["scores"].shape == ref["scores"].shape and dense["boxes"].dtype == torch.float32
    # int8 of activations and weights: probabilities within a few hundredths, boxes within a pixel or two.
    assert (dense["scores"] - ref["scores"]).abs().mean() < 0.01
    assert (dense["boxes"] - ref["boxes"]).abs().median() < 1.0
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "scores", "labels"}
    # The oneDNN kernels compute what the reference graph (quantize/dequantize around float ops) says.
    reference = quantize(model, sample_images * 4, batch_size=4, compile=False)
    assert reference.quantized_with["backend"] == "pt2e" and "compile" in reference.quantized_with["reason"]
    with torch.no_grad():
        torch.testing.assert_close(qmodel.dense_predictions(sample_images)["scores"],
                                   reference.dense_predictions(sample_images)["scores"], atol=2e-3, rtol=0)
    for image, det in zip(sample_images, detections):  # boxes in each image's own pixels
        assert det["boxes"][:, 2].max() <= image.shape[2] + 1e-3 and det["boxes"][:, 3].max() <= image.shape[1] + 1e-3


def _batch_sizes_seen(qmodel: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch size of every call of ``qmodel``'s compiled network (PT2E: its backbone and head graphs; an
    exported file: its runtime), appended as they happen."""
    seen: list[int] = []

    def counted(run):  # noqa: ANN001, ANN202
        def call(inputs):  # noqa: ANN001, ANN202
            seen.append(len(inputs) if isinstance(inputs, (torch.Tensor, np.ndarray)) else len(inputs[0]))
            return run(inputs)
        return call

    if isinstance(qmodel, ssd_zoo.SSD):
        for part in (qmodel.backbone, qmodel.head):
            monkeypatch.setattr(part, "forward", counted(part.forward))
    else:
        monkeypatch.setattr(qmodel.runner, "_run", counted(qmodel.runner._run))
    return seen


@pytest.mark.parametrize("which", ["pt2e_model", "auto_model"])
def test_a_batch_runs_as_one_batch_with_the_detections_of_single_images(which: str, request: pytest.FixtureRequest,
                                                                       sample_images, monkeypatch) -> None:
    qmodel = request.getfixturevalue(which)
    seen = _batch_sizes_seen(qmodel, monkeypatch)
    with torch.no_grad():
        batch = qmodel(sample_images)
        # one pass of 3: PT2E's backbone, then its head; an exported graph once
        assert seen == ([3, 3] if isinstance(qmodel, ssd_zoo.SSD) else [3])
        singles = [qmodel([image])[0] for image in sample_images]
    if isinstance(qmodel, ssd_zoo.SSD):  # one lowered graph per batch size, made on first use and kept
        lowered = dict(qmodel.backbone.lowered)
        assert {"1", "3"} <= set(lowered) and qmodel(sample_images) is not None
        assert all(qmodel.backbone.lowered[key] is graph for key, graph in lowered.items())
    for i, (b, s) in enumerate(zip(batch, singles)):
        n = min(20, len(s["scores"]))
        assert n > 3, f"image {i}: the test wants detections to compare"
        assert torch.equal(b["labels"][:n], s["labels"][:n]), f"image {i}"
        torch.testing.assert_close(b["scores"][:n], s["scores"][:n], atol=1e-4, rtol=0)
        torch.testing.assert_close(b["boxes"][:n], s["boxes"][:n], atol=1e-2, rtol=0)


def test_auto_takes_the_fastest_installed_backend_and_says_why(float_model, auto_model, sample_images) -> None:
    backend, reason = choose_backend()
    assert auto_model.quantized_with == {"backend": backend, "reason": reason}
    assert f"'backend': '{backend}'" in repr(auto_model) and PREFERENCE[cpu_kind()][1] in repr(auto_model)
    assert auto_model.eval() is auto_model and not auto_model.training
    if isinstance(auto_model, DeployedSSD):  # an exported graph: inference only
        with pytest.raises(ValueError, match="runs inference only; expected eval"):
            auto_model.train()
    assert auto_model.categories == auto_model.class_names == float_model.categories
    assert auto_model.input_size == float_model.input_size and auto_model.thresholds == float_model.thresholds
    assert auto_model.record() == float_model.record()
    detections = auto_model(sample_images[:2])
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "scores", "labels"}
    assert detections[0]["labels"].dtype == torch.int64 and len(detections[0]["scores"]) > 0


def test_the_choice_is_the_measured_table() -> None:
    everything = list(BACKENDS)
    assert choose_backend("AMX", everything)[0] == "openvino" and "8.5x" in choose_backend("AMX", everything)[1]
    assert choose_backend("VNNI", everything)[0] == "openvino" and "6.2x" in choose_backend("VNNI", everything)[1]
    backend, reason = choose_backend("AMX", ["pt2e", "onnxruntime"])
    assert backend == "pt2e" and "openvino not installed (pip install 'ssd_zoo[openvino]')" in reason
    assert choose_backend("none", ["onnxruntime"])[0] == "onnxruntime"
    with pytest.raises(ImportError, match="found none: openvino not installed"):
        choose_backend("VNNI", [])


@pytest.mark.parametrize("flags,isa,kind", [({"amx_int8", "avx512_vnni", "avx512f"}, "AMX", "AMX"),
                                            ({"avx512_vnni", "avx512f", "avx2"}, "AVX512_VNNI", "VNNI"),
                                            ({"avx_vnni", "avx2"}, "AVX_VNNI", "VNNI"),
                                            ({"avx512f", "avx2"}, "AVX512", "none"), (set(), "none", "none")])
def test_cpu_kind_from_flags(flags: set[str], isa: str, kind: str) -> None:
    assert int8_isa(frozenset(flags)) == isa and cpu_kind(frozenset(flags)) == kind
    assert has_vnni(frozenset(flags)) == (kind != "none")


def test_without_openvino_auto_takes_the_next_and_asking_for_it_names_the_extra(float_model, sample_images,
                                                                                monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: importing it raises ImportError
    backend, reason = choose_backend()
    assert backend == "pt2e" and reason.endswith("openvino not installed (pip install 'ssd_zoo[openvino]')")
    with pytest.raises(ImportError, match=r"backend 'openvino' needs openvino, nncf, onnx; .*'ssd_zoo\[openvino\]'"):
        quantize(float_model, sample_images, backend="openvino")


def test_backend_errors(float_model, sample_images) -> None:
    with pytest.raises(ValueError, match="expected backend 'auto' or one of openvino, pt2e, onnxruntime, found 'trt'"):
        quantize(float_model, sample_images, backend="trt")
    with pytest.raises(ValueError, match="keep_float apply to backend 'pt2e' only, found backend='openvino'"):
        quantize(float_model, sample_images, backend="openvino", keep_float=["head"])
    with pytest.raises(TypeError, match="expected an ssd_zoo SSD, found Conv2d"):
        quantize(nn.Conv2d(3, 3, 1), sample_images)


def test_keep_float_leaves_the_head_in_float(float_model, sample_images) -> None:
    model = float_model
    qmodel = quantize(model, sample_images, keep_float=["head"], compile=False)
    assert qmodel.head.state_dict().keys() == model.head.state_dict().keys()
    with pytest.raises(ValueError, match="not modules of the model"):
        quantize(model, sample_images, keep_float=["heads"])


def test_calibration_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="found nothing at"):
        read_calibration_images(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no .jpg"):
        read_calibration_images(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg: not a readable image"):
        read_calibration_images(tmp_path)
    with pytest.raises(ValueError, match="found none"):
        quantize(tiny_model(), [])
