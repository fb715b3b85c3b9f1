"""ONNX export with NMS inside: onnxruntime's outputs equal the PyTorch model's eval detections."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ssd_zoo
from ssd_zoo.deploy.export import ExportableSSD, export_onnx

ort = pytest.importorskip("onnxruntime")


def _spread_scores(model: ssd_zoo.SSD) -> ssd_zoo.SSD:
    """Random heads score every class about equally; scaled down, scores spread and boxes stay sane."""
    with torch.no_grad():
        for branch, gain in ((model.head.classification, 0.05), (model.head.regression, 0.01)):
            for conv in branch.modules():  # plain 3x3 convs, or SSDLite's separable blocks
                if isinstance(conv, torch.nn.Conv2d):
                    conv.weight.mul_(gain)
    return model.eval()


def _inputs(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """The photos resized to the model's input, ``[N, 3, size, size]`` in [0, 1]."""
    return torch.cat([F.interpolate(im[None], size=(size, size), mode="bilinear") for im in images])


def _check_onnx_matches_eager(model: ssd_zoo.SSD, images: torch.Tensor, path) -> None:
    # A threshold between the best and the worst detection of image 0, so that some images have fewer
    # than detections_per_img detections and the zero padding is exercised too.
    with torch.no_grad():
        scores = model(list(images[:1]))[0]["scores"]
    middle = len(scores) // 2  # halfway between two scores: no detection sits on the threshold
    model.score_thresh = float(scores[middle - 1] + scores[middle]) / 2
    with torch.no_grad():
        expected = model(list(images))
    export_onnx(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (images, images[:1]):  # the batch axis is dynamic (traced with 2)
        num, boxes, scores, labels = session.run(None, {"images": batch.numpy()})
        k = model.detections_per_img
        assert boxes.shape == (len(batch), k, 4) and scores.shape == labels.shape == (len(batch), k)
        assert num.dtype == labels.dtype == np.int64 and boxes.dtype == scores.dtype == np.float32
        for i, e in enumerate(expected[: len(batch)]):
            n = len(e["scores"])
            assert num[i] == n, f"image {i}: {num[i]} detections from onnxruntime, {n} from PyTorch"
            assert 0 < n < k, f"image {i}: the test wants some padding, found {n} of {k}"
            np.testing.assert_array_equal(labels[i, :n], e["labels"].numpy(), err_msg=f"image {i}")
            np.testing.assert_allclose(boxes[i, :n], e["boxes"].numpy(), atol=1e-2, rtol=0, err_msg=f"image {i}")
            np.testing.assert_allclose(scores[i, :n], e["scores"].numpy(), rtol=1e-4, atol=1e-6)
            assert not boxes[i, n:].any() and not scores[i, n:].any() and not labels[i, n:].any()


def test_vgg16_onnx_matches_pytorch(sample_images, tmp_path) -> None:
    torch.manual_seed(0)
    model = _spread_scores(ssd_zoo.build("ssd300_vgg16", num_classes=21))
    _check_onnx_matches_eager(model, _inputs(sample_images[:3], model.input_size), tmp_path / "vgg.onnx")


def test_timm_onnx_matches_pytorch(sample_images, tmp_path) -> None:
    torch.manual_seed(0)
    model = _spread_scores(ssd_zoo.build("ssd300_resnet18", num_classes=21))  # a timm backbone
    _check_onnx_matches_eager(model, _inputs(sample_images[:2], model.input_size), tmp_path / "timm.onnx")


def test_padded_detections_match_postprocess(sample_images) -> None:
    """The fixed-shape post-processing that is exported equals the eager one (no ONNX involved)."""
    torch.manual_seed(0)
    model = _spread_scores(ssd_zoo.build("ssd300_vgg16", num_classes=21, detections_per_img=50))
    images = _inputs(sample_images[:2], model.input_size)
    with torch.no_grad():
        expected = model(list(images))
        num, boxes, scores, labels = ExportableSSD(model)(images)
    for i, e in enumerate(expected):
        n = int(num[i])
        assert n == len(e["scores"]) == 50
        assert torch.equal(labels[i, :n], e["labels"]), f"image {i}"
        torch.testing.assert_close(boxes[i, :n], e["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(scores[i, :n], e["scores"])


def test_export_rejects_other_models(tmp_path) -> None:
    with pytest.raises(TypeError, match="expected an ssd_zoo SSD, found Linear"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")  # type: ignore[arg-type]


def test_cli_export(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    from ssd_zoo.cli import main

    out = tmp_path / "ssd.onnx"
    assert main(["export", "ssd300_vgg16", "--weights", "none", str(out)]) == 0
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["num_detections", "boxes", "scores", "labels"]
    assert any(node.op_type == "NonMaxSuppression" for node in graph.node)
