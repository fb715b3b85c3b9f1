"""A TF Object Detection API frozen graph read without TensorFlow computes what TensorFlow computes with it: the
same anchors, raw box encodings and scores, and detections. Two graphs: a real trained SSDLite-MobileNetV2
(300x300, one class; from PyPI, see tools/fetch_test_graph.py) and a small SSD-MobileNetV1 that
tools/tf_make_ssd_graph.py built with TensorFlow in the OD API's names (random weights, two classes).

The references (tests/data/tf_*.npz) were written by tools/tf_reference.py, which runs a graph with TensorFlow on
the three photos of assets/; TensorFlow is not needed here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAMPLE_NAMES, TF_REFERENCE
from torchvision.ops import box_iou

import ssd_zoo
from ssd_zoo.models.tf_layers import ConvSpec, SamePad2d, TFConv, same_padding
from ssd_zoo.transform import resize_bilinear
from ssd_zoo.weights.publishers.tf_object_detection import MODEL
from ssd_zoo.weights.tf_graphdef import GraphDef

STEMS = [Path(name).stem for name in SAMPLE_NAMES]
# The MobileNetV1 SSD family: a small graph tools/tf_make_ssd_graph.py built with TensorFlow (random weights).
TF_V1_GRAPH = TF_REFERENCE.parent / "tf_ssd_mobilenet_v1.pb"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    if not TF_REFERENCE.is_file():
        pytest.fail(f"expected TensorFlow's reference outputs at {TF_REFERENCE} (tools/tf_reference.py), found none")
    return dict(np.load(TF_REFERENCE))


@pytest.fixture(scope="module")
def network_outputs(tf_graph_model: ssd_zoo.SSD, sample_images: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """``(cls_logits [3, A, C], box_regression [3, A, 4], default boxes [A, 4])`` on the three photos."""
    with torch.inference_mode():
        return tf_graph_model._network(tf_graph_model.transform(sample_images).images)


def test_graph_settings(tf_graph_model: ssd_zoo.SSD) -> None:
    model = tf_graph_model
    assert (model.num_classes, model.input_size, model.score_activation) == (2, 300, "sigmoid")
    assert model.transform.coordinates == "asymmetric"
    assert model.transform.mean.flatten().tolist() == pytest.approx([0.5] * 3, abs=1e-6)
    assert model.transform.std.flatten().tolist() == pytest.approx([0.5] * 3, abs=1e-6)
    assert model.default_boxes.spec.boxes_per_location == [3, 6, 6, 6, 6, 6]
    # The graph's NMS: IoU 0.6, score 1e-8, 100 per class and per image (float32 constants).
    assert model.nms_thresh == pytest.approx(0.6) and model.score_thresh == pytest.approx(1e-8)
    assert (model.detections_per_img, model.topk_candidates, model.clip_before_nms) == (100, 1917, False)
    assert model.categories == ["__background__", "class 1"]
    assert model.builder["name"] == MODEL


def test_anchors_equal_the_graphs(network_outputs: tuple[torch.Tensor, ...], reference: dict[str, np.ndarray]) -> None:
    anchors = network_outputs[2] / 300  # xyxy, 0..1
    theirs = torch.from_numpy(reference["anchors"])[:, [1, 0, 3, 2]]  # TF: ymin, xmin, ymax, xmax
    assert anchors.shape == theirs.shape == (1917, 4)
    torch.testing.assert_close(anchors, theirs, atol=1e-6, rtol=0)


def test_raw_outputs_equal_tensorflows(network_outputs: tuple[torch.Tensor, ...],
                                       reference: dict[str, np.ndarray]) -> None:
    cls_logits, box_regression, _ = network_outputs
    for i, stem in enumerate(STEMS):
        encodings = box_regression[i][:, [1, 0, 3, 2]]  # ours (tx, ty, tw, th) -> TF's (ty, tx, th, tw)
        torch.testing.assert_close(encodings, torch.from_numpy(reference[f"{stem}/box_encodings"]), atol=1e-4, rtol=1e-4)
        scores = torch.sigmoid(cls_logits[i])
        torch.testing.assert_close(scores, torch.from_numpy(reference[f"{stem}/class_scores"]), atol=1e-5, rtol=0)


def test_detections_equal_tensorflows(tf_graph_model: ssd_zoo.SSD, sample_images: list[torch.Tensor],
                                      reference: dict[str, np.ndarray]) -> None:
    """All of TensorFlow's detections (100 per photo, down to scores of 1e-4): same class, IoU >= 0.99, score
    within 2e-3; and the three people the graph is sure of (score > 0.5) on the photos with people."""
    with torch.inference_mode():
        detections = tf_graph_model(sample_images)
    for i, (stem, image, ours) in enumerate(zip(STEMS, sample_images, detections)):
        height, width = image.shape[-2:]
        boxes = torch.from_numpy(reference[f"{stem}/boxes"])[:, [1, 0, 3, 2]] * torch.tensor([width, height] * 2)
        scores, classes = torch.from_numpy(reference[f"{stem}/scores"]), torch.from_numpy(reference[f"{stem}/classes"])
        assert len(ours["scores"]) == len(scores) == 100, stem
        iou = box_iou(boxes, ours["boxes"])
        same = (iou >= 0.99) & (classes[:, None] == ours["labels"][None]) & \
               ((scores[:, None] - ours["scores"][None]).abs() <= 2e-3)
        missing = (~same.any(dim=1)).nonzero().flatten().tolist()
        assert not missing, f"{stem}: TensorFlow's detections {missing} have no equal among ssd_zoo's"
    assert [int((d["scores"] > 0.5).sum()) for d in detections] == [0, 1, 3]


def test_saved_model_rebuilds_without_the_graph(tf_graph_model: ssd_zoo.SSD, tmp_path: Path) -> None:
    """A state dict of the imported model records the architecture: ssd_zoo.load rebuilds it from the .pth."""
    path = tmp_path / "imported.pth"
    torch.save(tf_graph_model.state_dict(), path)
    again = ssd_zoo.load(path).eval()
    assert again.record() == tf_graph_model.record()
    image = torch.rand(1, 3, 300, 300, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(again.dense_predictions(image), tf_graph_model.dense_predictions(image))


def test_categories_given_or_numbered(tf_graph_path: Path) -> None:
    model = ssd_zoo.load(tf_graph_path, categories=["__background__", "person"])
    assert model.class_names == ["__background__", "person"] and model.record()["categories"][1] == "person"
    built = ssd_zoo.build(MODEL, weights=tf_graph_path)  # the same model by name, the graph as its weights
    assert built.num_classes == 2 and built.default_boxes.spec == model.default_boxes.spec


def test_not_a_graph(tmp_path: Path) -> None:
    bad = tmp_path / "frozen_inference_graph.pb"
    bad.write_bytes(b"\x00\x01 not a protocol buffer \xff" * 10)
    with pytest.raises(ValueError, match="TensorFlow frozen GraphDef"):
        ssd_zoo.load(bad)


def test_graph_without_box_predictors(tf_graph_path: Path, tmp_path: Path) -> None:
    from tensorboard.compat.proto import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(tf_graph_path.read_bytes())
    kept = [node for node in graph.node if not node.name.startswith("BoxPredictor_")]
    del graph.node[:]
    graph.node.extend(kept)
    path = tmp_path / "no_predictors.pb"
    path.write_bytes(graph.SerializeToString())
    with pytest.raises(ValueError, match="expected box predictors BoxPredictor_0"):
        ssd_zoo.load(path)
    assert GraphDef(path).has("Preprocessor/sub")


@pytest.mark.parametrize(("size", "kernel", "stride", "expected"), [
    (300, 3, 2, (0, 1)), (19, 3, 2, (1, 1)), (10, 3, 2, (0, 1)), (5, 3, 2, (1, 1)), (2, 3, 2, (0, 1)),
    (1, 3, 2, (1, 1)), (7, 3, 1, (1, 1)), (7, 1, 2, (0, 0)), (8, 5, 2, (1, 2)),
])
def test_same_padding_puts_the_odd_pixel_after(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == expected
    out = SamePad2d(kernel, stride)(torch.zeros(1, 1, size, size))
    assert out.shape[-1] == size + sum(expected)
    assert (out.shape[-1] - kernel) // stride + 1 == -(-size // stride)  # TF's output size, ceil(size / stride)


def test_tf_conv_stride_2_reads_the_top_left_pixel() -> None:
    """At stride 2 on an even input, TF's SAME pads only after: output (0, 0) is centred on input (1, 1)."""
    unit = TFConv(ConvSpec(1, 1, 3, stride=2, depthwise=True))
    torch.nn.init.zeros_(unit.conv.weight)
    with torch.no_grad():
        unit.conv.weight[0, 0, 0, 0] = 1.0  # the window's top-left tap
    image = torch.arange(16.0).view(1, 1, 4, 4)
    assert unit(image)[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]


def test_asymmetric_resize_samples_like_tensorflow_1() -> None:
    """TF 1's ResizeBilinear: output pixel j samples input j * in / out (no half-pixel shift), clamped."""
    image = torch.arange(16.0).view(1, 1, 4, 4)
    assert resize_bilinear(image, (2, 2), "asymmetric")[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]
    row = torch.tensor([[[[0.0, 10.0]]]])
    assert resize_bilinear(row, (1, 4), "asymmetric")[0, 0, 0].tolist() == [0.0, 5.0, 10.0, 10.0]
    assert resize_bilinear(row, (1, 4), "half_pixel")[0, 0, 0].tolist() == [0.0, 2.5, 7.5, 10.0]


def test_the_zoo_architecture_without_a_graph_is_the_graphs(tf_graph_path: Path) -> None:
    """ssd_zoo's own description of the zoo's ssdlite_mobilenet_v2 (layers, names, anchors) is what the graph
    holds: built without weights for 2 classes, the graph's tensors load into it, key for key."""
    from ssd_zoo.weights.resolve import read_weights

    checkpoint = read_weights(tf_graph_path)
    built = ssd_zoo.build(MODEL, num_classes=2)
    kwargs = checkpoint.architecture()[1]
    assert built.builder["kwargs"]["architecture"] == kwargs["architecture"]
    assert built.default_boxes.spec.to_dict() == kwargs["default_boxes"]
    assert built.thresholds == {k: kwargs[k] for k in built.thresholds}
    built.load_state_dict(checkpoint.state_dict, strict=False)  # the graph's weights, no record: loads as its own
    assert set(built.state_dict()) - set(checkpoint.state_dict) == {"_record"}
    coco = ssd_zoo.build(MODEL)
    assert coco.num_classes == 91 and coco.class_names[1] == "person" and coco.class_names[12] == "N/A"


def test_onnx_export_detects_as_the_model(sample_images: list[torch.Tensor], tmp_path: Path) -> None:
    """An imported graph (the small MobileNetV1 SSD, for speed) exports with NMS inside; onnxruntime (resizing as
    the record says: TF 1's coordinates) finds the eager model's detections on the photos."""
    from ssd_zoo.deploy.export import export
    from ssd_zoo.deploy.runtime import load_runner

    model = ssd_zoo.load(TF_V1_GRAPH, score_thresh=0.9, topk_candidates=50).eval()  # a smaller NMS, a quicker test
    export(model, tmp_path / "tf_ssd.onnx")
    runner = load_runner(tmp_path / "tf_ssd.onnx")
    assert runner.transform.coordinates == "asymmetric"
    with torch.inference_mode():
        expected = model(sample_images)
    for i, (got, want) in enumerate(zip(runner(sample_images), expected)):
        n = len(want["scores"])
        assert n > 0 and torch.equal(got["labels"], want["labels"]), i
        torch.testing.assert_close(got["boxes"], want["boxes"], atol=1e-2, rtol=0)
        torch.testing.assert_close(got["scores"], want["scores"], atol=1e-4, rtol=0)


def test_head_surgery_carries_the_graphs_class(tmp_path: Path) -> None:
    """A graph's class ("dog" of the small MobileNetV1 SSD, named on load) carried into a detector of other
    classes (bird, dog): dog's logits are the graph's."""
    from ssd_zoo.finetune.surgery import HeadSurgeryWarning

    source = ssd_zoo.load(TF_V1_GRAPH, categories=["__background__", "cat", "dog"]).eval()
    torch.save(source.state_dict(), tmp_path / "cat_dog.pth")
    with pytest.warns(HeadSurgeryWarning, match="bird"):
        target = ssd_zoo.build(MODEL, weights=tmp_path / "cat_dog.pth", class_names=["bird", "dog"]).eval()
    assert target.class_names == ["__background__", "bird", "dog"] and target.score_activation == "sigmoid"
    image = torch.rand(1, 3, 300, 300, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        theirs, ours = source._network(image)[0], target._network(image)[0]
    torch.testing.assert_close(ours[..., [0, 2]], theirs[..., [0, 2]], atol=2e-5, rtol=1e-4)


def test_sigmoid_loss_is_the_od_apis_weighted_sigmoid_with_hard_negatives() -> None:
    """Per default box, BCE of every class logit against the one-hot target (background column too), summed;
    the 3 negatives per positive of highest loss; divided by the positives."""
    from ssd_zoo.ops.loss import ssd_loss

    anchors = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [0, 40, 10, 50], [40, 0, 50, 10.0]])
    logits = torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(0))
    gt_boxes, gt_labels = torch.tensor([[[0, 0, 10, 10.0]]]), torch.tensor([[2]])
    losses = ssd_loss(logits, torch.zeros(1, 5, 4), anchors, gt_boxes, gt_labels, torch.tensor([[True]]),
                      activation="sigmoid")
    targets = torch.zeros(5, 3)
    targets[0, 2] = 1.0  # anchor 0 matches the box (class 2); the others are background (column 0)
    targets[1:, 0] = 1.0
    per_box = torch.nn.functional.binary_cross_entropy_with_logits(logits[0], targets, reduction="none").sum(-1)
    hardest = per_box[1:].topk(3).values.sum()
    torch.testing.assert_close(losses["classification"], per_box[0] + hardest)
    with pytest.raises(ValueError, match="activation"):
        ssd_loss(logits, torch.zeros(1, 5, 4), anchors, gt_boxes, gt_labels, torch.tensor([[True]]), activation="tanh")


def test_mobilenet_v1_ssd_graph_equals_tensorflow(sample_images: list[torch.Tensor]) -> None:
    """The MobileNetV1 SSD family (tools/tf_make_ssd_graph.py: an OD API-named graph with random weights, two
    classes): plain 3x3 extra layers at stride 2 on odd and even maps, 1x1 box predictors, NMS per class, batch
    norm fused and unfused."""
    reference = dict(np.load(TF_V1_GRAPH.with_suffix(".npz")))
    model = ssd_zoo.load(TF_V1_GRAPH).eval()
    assert model.num_classes == 3 and model.backbone.Conv2d_13_pointwise_2_Conv2d_2_3x3_s2_512.conv.stride == (2, 2)
    assert [len(chain) for chain in model.head.classification] == [1] * 6  # one 1x1 conv per level
    # Unfused batch norm (Conv2d_0, the depthwise units) folded into the conv; FusedBatchNorm kept as BatchNorm2d.
    folded, kept = model.backbone.Conv2d_1_depthwise, model.backbone.Conv2d_1_pointwise
    assert folded.conv.bias is not None and not hasattr(folded, "bn") and kept.conv.bias is None and hasattr(kept, "bn")
    with torch.inference_mode():
        cls_logits, box_regression, anchors = model._network(model.transform(sample_images).images)
        detections = model(sample_images)
    theirs = torch.from_numpy(reference["anchors"])[:, [1, 0, 3, 2]]
    torch.testing.assert_close(anchors / 300, theirs, atol=1e-6, rtol=0)
    for i, stem in enumerate(STEMS):
        torch.testing.assert_close(box_regression[i][:, [1, 0, 3, 2]],
                                   torch.from_numpy(reference[f"{stem}/box_encodings"]), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(torch.sigmoid(cls_logits[i]), torch.from_numpy(reference[f"{stem}/class_scores"]),
                                   atol=1e-5, rtol=0)
        height, width = sample_images[i].shape[-2:]
        boxes = torch.from_numpy(reference[f"{stem}/boxes"])[:, [1, 0, 3, 2]] * torch.tensor([width, height] * 2)
        scores, classes = torch.from_numpy(reference[f"{stem}/scores"]), torch.from_numpy(reference[f"{stem}/classes"])
        ours = detections[i]
        assert len(ours["scores"]) == len(scores) == 100, stem
        same = (box_iou(boxes, ours["boxes"]) >= 0.99) & (classes[:, None] == ours["labels"][None]) & \
               ((scores[:, None] - ours["scores"][None]).abs() <= 2e-3)
        assert same.any(dim=1).all(), f"{stem}: TensorFlow's detections {(~same.any(dim=1)).nonzero().flatten().tolist()}"


def test_an_op_it_does_not_know_raises_naming_it(tmp_path: Path) -> None:
    from tensorboard.compat.proto import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(TF_V1_GRAPH.read_bytes())
    node = next(n for n in graph.node if n.name == "FeatureExtractor/MobilenetV1/Conv2d_3_pointwise/Relu6")
    node.op = "Elu"
    path = tmp_path / "elu.pb"
    path.write_bytes(graph.SerializeToString())
    with pytest.raises(ValueError, match="Conv2d_3_pointwise/Relu6 is a Elu node"):
        ssd_zoo.load(path)


def test_anchor_fit_refuses_explicit_shapes() -> None:
    from ssd_zoo.finetune.anchor_fit import fit
    from ssd_zoo.ops.tf_anchors import anchor_spec, ssd_anchor_levels

    spec = anchor_spec(300, [19, 10, 5, 3, 2, 1], ssd_anchor_levels())
    with pytest.raises(ValueError, match="explicit shapes"):
        fit(spec, torch.tensor([[10.0, 10.0, 100.0, 200.0]]))
