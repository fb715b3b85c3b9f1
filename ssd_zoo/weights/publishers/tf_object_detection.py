"""The TensorFlow Object Detection API's SSDs: a ``frozen_inference_graph.pb`` read into an ssd_zoo SSD, without
TensorFlow (:mod:`ssd_zoo.weights.tf_graphdef` parses it with tensorboard's protocol buffers).

    >>> model = ssd_zoo.load("frozen_inference_graph.pb").eval()             # any TF1 OD API SSD export
    >>> model = ssd_zoo.load("frozen_inference_graph.pb", categories=["__background__", "person"])

What is read from the graph, by the names the OD API gives its nodes (``object_detection/meta_architectures/
ssd_meta_arch.py``, ``exporter.py``):
- the network (:mod:`ssd_zoo.models.tf_graph`): every unit from the preprocessed image (``Preprocessor/sub``) to
  the box predictors' outputs (``BoxPredictor_k/Reshape`` and ``Reshape_1`` read them), whatever the feature
  extractor; the predictors' box rows are permuted from TensorFlow's ``(ty, tx, th, tw)`` to ssd_zoo's
  ``(tx, ty, tw, th)``;
- the input: its size (``Preprocessor/.../ResizeImage/stack``), TensorFlow 1's bilinear resize (``"asymmetric"``
  coordinates unless the graph's ``ResizeBilinear`` sets ``half_pixel_centers``), the normalisation
  ``x * mul - sub`` on 0..255 (``2/255``, ``1``: mean 0.5, std 0.5 on 0..1);
- the anchors (``MultipleGridAnchorGenerator``): per level the ``(scale, aspect ratio)`` constants the generator
  multiplies, kept as the widths and heights it computes (float32), in its order, on the grid sides of its
  ``range`` nodes, centres at ``(j + 0.5) / side``, nothing clipped (``DefaultBoxSpec.shapes``);
- the scores (``Postprocessor/convert_scores``: sigmoid or softmax, after ``scale_logits``), the box coder's
  scales (10, 10, 5, 5: ssd_zoo's variances 0.1 / 0.2) and the NMS settings (IoU and score thresholds, the most
  detections per class and per image), applied to boxes as decoded and clipped afterwards, as the graph does.

Labels keep the graph's ids. Class names: ``categories=`` when given, else COCO's (torchvision's 91 names with
"N/A" at COCO's unused ids, which are the OD API label map's ids) for a 90-class graph, else numbered.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ssd_zoo.models.ssd import RECORD_FORMAT, SSD
from ssd_zoo.models.tf_graph import Architecture, GraphBackbone, GraphPredictorHead
from ssd_zoo.models.tf_mobilenet_v2 import ssdlite_mobilenet_v2
from ssd_zoo.ops.default_boxes import DefaultBoxGenerator, DefaultBoxSpec, feature_grid, num_default_boxes
from ssd_zoo.ops.tf_anchors import anchor_spec, ssd_anchor_levels
from ssd_zoo.registry import register_model
from ssd_zoo.transform import SSDTransform
from ssd_zoo.weights.published import COCO_CATEGORIES
from ssd_zoo.weights.resolve import Checkpoint, fetch_weights, register_file_reader
from ssd_zoo.weights.tf_graphdef import GraphDef, trace

MODEL = "ssd_tf_object_detection"
LAYOUT = "tf_object_detection"
_BOX_ORDER = (1, 0, 3, 2)  # TensorFlow's (ty, tx, th, tw) rows -> ssd_zoo's (tx, ty, tw, th)
_NMS_OPS = ("NonMaxSuppressionV3", "NonMaxSuppressionV4", "NonMaxSuppressionV5")


def _module_path(scope: str) -> str:
    """A TensorFlow scope -> a dotted module path: ``FeatureExtractor/MobilenetV2/expanded_conv_1/expand`` ->
    ``expanded_conv_1.expand`` (the extractor's name dropped), ``BoxPredictor_0/ClassPredictor`` kept."""
    parts = scope.split("/")
    if parts[0] == "FeatureExtractor":
        parts = parts[2:]
    return ".".join(part.replace(".", "_") for part in parts)


def _levels(graph: GraphDef) -> list[int]:
    levels = sorted(int(n.name.split("/")[0].removeprefix("BoxPredictor_")) for n in
                    graph.find(lambda n: n.name.startswith("BoxPredictor_") and n.name.endswith("/Reshape_1")))
    if not levels or levels != list(range(len(levels))):
        raise ValueError(f"{graph.path}: expected box predictors BoxPredictor_0 ... BoxPredictor_N (a TF Object "
                         f"Detection API SSD export), found levels {levels}")
    return levels


def _const_operand(graph: GraphDef, name: str) -> float:
    """The one constant scalar operand of the binary node ``name`` (``Preprocessor/mul``: ``x * 2/255``)."""
    consts = [graph.const(i) for i in graph.node(name).input if graph.node(i).op == "Const"]
    if len(consts) != 1 or consts[0].size != 1:
        raise ValueError(f"{graph.path}: expected {name} to apply one scalar constant, found {len(consts)} constants")
    return float(consts[0].item())


def _input(graph: GraphDef) -> tuple[int, str, list[float], list[float]]:
    """``(input size, resize coordinates, mean, std)`` of the graph's preprocessor (mean/std on 0..1, float32)."""
    resize = graph.find(lambda n: n.name.startswith("Preprocessor/") and n.op.startswith("Resize"))
    if len(resize) != 1 or resize[0].op != "ResizeBilinear" or resize[0].attr["align_corners"].b:
        found = [(n.name, n.op) for n in resize]
        raise ValueError(f"{graph.path}: expected one ResizeBilinear (align_corners=False) in the preprocessor, "
                         f"found {found}")
    height, width = (int(v) for v in graph.const(resize[0].input[1]))
    if height != width:
        raise ValueError(f"{graph.path}: expected a square input size, found {height}x{width}")
    coordinates = "half_pixel" if resize[0].attr["half_pixel_centers"].b else "asymmetric"
    scale, shift = (_const_operand(graph, name) for name in ("Preprocessor/mul", "Preprocessor/sub"))
    f32 = lambda v: float(np.float32(v))  # noqa: E731  (the record holds float32 values, as the transform's buffers)
    return height, coordinates, [f32(shift / (255 * scale))] * 3, [f32(1 / (255 * scale))] * 3


def _anchor_node_consts(graph: GraphDef) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[int], np.ndarray]:
    """Per level ``(scales, aspect ratios)``, the grid sides, and the base anchor size, from the generator's
    constants: ``heights = scales / sqrt(ratios) * base[0]``, ``widths = scales * sqrt(ratios) * base[1]``."""
    scope = "MultipleGridAnchorGenerator/"
    boxes = []
    for node in graph.find(lambda n: n.name.startswith(scope) and n.op == "RealDiv"):
        ratios = graph.node(node.input[1])
        if ratios.op == "Sqrt" and graph.node(node.input[0]).op == "Const":
            boxes.append((graph.const(node.input[0]), graph.const(ratios.input[0])))
    limits = [int(graph.const(n.input[1])) for n in graph.find(lambda n: n.name.startswith(scope) and n.op == "Range")]
    base = [graph.const(n.input[0]) for n in graph.find(lambda n: n.name.startswith(scope) and n.op == "StridedSlice")
            if graph.node(n.input[0]).op == "Const" and graph.const(n.input[0]).shape == (2,)]
    if not boxes or len(limits) != 2 * len(boxes) or not base:
        raise ValueError(f"{graph.path}: expected a MultipleGridAnchorGenerator with per-level scale and ratio "
                         f"constants, found {len(boxes)} levels, {len(limits)} ranges, {len(base)} base sizes")
    sides = limits[0::2]
    if sides != limits[1::2]:
        raise ValueError(f"{graph.path}: expected square anchor grids, found rows {sides} and columns {limits[1::2]}")
    return boxes, sides, base[0].astype(np.float32)


def _anchors(graph: GraphDef, input_size: int) -> DefaultBoxSpec:
    """The graph's anchors as a :class:`DefaultBoxSpec` with explicit ``shapes`` (see the module docstring)."""
    boxes, sides, base = _anchor_node_consts(graph)
    return anchor_spec(input_size, sides, boxes, tuple(float(b) for b in base))


def _scores(graph: GraphDef) -> tuple[str, float]:
    """``(score activation, logit scale)`` of ``Postprocessor/convert_scores`` / ``scale_logits``."""
    converter = graph.node("Postprocessor/convert_scores")
    activations = {"Sigmoid": "sigmoid", "Softmax": "softmax"}
    if converter.op not in activations:
        raise ValueError(f"{graph.path}: Postprocessor/convert_scores is {converter.op}; expected {sorted(activations)}")
    scale = float(graph.const("Postprocessor/scale_logits/y").item()) if graph.has("Postprocessor/scale_logits/y") else 1.0
    return activations[converter.op], scale


def _thresholds(graph: GraphDef, num_anchors: int) -> dict[str, Any]:
    """The post-processing settings as :class:`SSD` keywords, from the graph's NMS (see the module docstring)."""
    nms = graph.find(lambda n: n.name.startswith("Postprocessor/") and n.op in _NMS_OPS)
    if not nms:
        raise ValueError(f"{graph.path}: expected a NonMaxSuppressionV3/V4/V5 node in Postprocessor, found none")
    node = nms[0]
    per_class = graph.node(node.input[2])
    per_class = min(int(graph.const(i)) for i in per_class.input if graph.node(i).op == "Const") \
        if per_class.op == "Minimum" else int(graph.const(node.input[2]))
    decode = [float(graph.const(f"Postprocessor/Decode/truediv{s}/y")) for s in ("", "_1", "_2", "_3")]
    if decode != [10.0, 10.0, 5.0, 5.0]:
        raise ValueError(f"{graph.path}: box coder scales {decode}; ssd_zoo decodes with (10, 10, 5, 5)")
    pads = graph.find(lambda n: n.name.endswith("PadOrClipBoxList/sub/y"))
    total = int(graph.const(pads[0].name)) if pads else per_class
    if per_class < total:
        warnings.warn(f"{graph.path}: the graph keeps at most {per_class} detections per class and {total} per image; "
                      f"ssd_zoo caps per image only ({total})", UserWarning, stacklevel=3)
    return {"score_thresh": float(graph.const(node.input[4])), "nms_thresh": float(graph.const(node.input[3])),
            "topk_candidates": num_anchors, "detections_per_img": total, "clip_before_nms": False}


def _chain(program: Any, value: str, head: set[str]) -> list[str]:
    """The head units (module paths) from a feature map to the predictor output ``value``, in order."""
    steps = {s.name: s for s in program.steps}
    chain = [value]
    while steps[chain[0]].inputs[0] in head:
        chain.insert(0, steps[chain[0]].inputs[0])
    return chain


def read_graph(path: str | Path) -> Checkpoint:
    """A frozen OD API graph as a :class:`Checkpoint` (state dict, record, and the builder keywords that make the
    model it fits: ``architecture``, ``default_boxes``, ``mean``/``std``, ``coordinates``, ``score_activation``
    and the graph's post-processing settings)."""
    graph = GraphDef(path)
    levels = _levels(graph)
    outputs = {(kind, k): graph.resolve(graph.node(f"BoxPredictor_{k}/{reshape}").input[0])
               for k in levels for kind, reshape in (("classification", "Reshape_1"), ("regression", "Reshape"))}
    program = trace(graph, list(outputs.values()), lambda name: name.startswith("Preprocessor/"), _module_path)
    head = {s.name for s in program.steps if s.name.startswith("BoxPredictor_")}
    chains = {key: _chain(program, program.values[node], head) for key, node in outputs.items()}
    specs = {s.name: s for s in program.steps}
    features = tuple(specs[chains["classification", k][0]].inputs[0] for k in levels)
    if any(specs[chains["regression", k][0]].inputs[0] != features[k] for k in levels):
        raise ValueError(f"{graph.path}: a level's box and class predictors read different feature maps")
    backbone_steps = tuple(s for s in program.steps if s.name not in head)
    architecture = Architecture(backbone_steps, features, *(
        tuple(tuple((name.rsplit(".", 1)[-1], specs[name].conv) for name in chains[kind, k]) for k in levels)
        for kind in ("classification", "regression")))

    input_size, coordinates, mean, std = _input(graph)
    spec = _anchors(graph, input_size)
    boxes = spec.boxes_per_location
    num_classes = specs[chains["classification", 0][-1]].conv.out_channels // boxes[0]
    activation, logit_scale = _scores(graph)
    state: dict[str, Tensor] = {}
    for step in backbone_steps:
        if step.op == "conv":
            state.update({f"backbone.{step.name}.{key}": t for key, t in program.tensors[step.name].items()})
    for (kind, k), chain in chains.items():
        for name in chain:
            tensors = dict(program.tensors[name])
            if name == chain[-1] and kind == "regression":  # rows box * 4 + coordinate: reorder the coordinates
                tensors = {key: t.unflatten(0, (-1, 4))[:, list(_BOX_ORDER)].flatten(0, 1) for key, t in tensors.items()}
            if name == chain[-1] and kind == "classification" and logit_scale != 1.0:
                tensors = {key: t / logit_scale for key, t in tensors.items()}
            state.update({f"head.{kind}.{k}.{name.rsplit('.', 1)[-1]}.{key}": t for key, t in tensors.items()})

    num_anchors = num_default_boxes(spec)
    kwargs = {"architecture": architecture.to_dict(), "default_boxes": spec.to_dict(), "mean": mean, "std": std,
              "coordinates": coordinates, "score_activation": activation, **_thresholds(graph, num_anchors)}
    record = {"format": RECORD_FORMAT, "input_size": input_size, "default_boxes": spec.to_dict(), "mean": mean,
              "std": std, "num_classes": num_classes,
              "categories": list(COCO_CATEGORIES) if num_classes == len(COCO_CATEGORIES) else None, "builder": {"name": MODEL, "kwargs": kwargs},
              "resize": "stretch", "pad_fill": None, "coordinates": coordinates, "score_activation": activation}
    return Checkpoint(lambda: state, str(path), LAYOUT, num_classes, None, record=record,
                      architecture=lambda: (MODEL, kwargs))


register_file_reader(".pb", read_graph)


# The TF1 zoo's ssdlite_mobilenet_v2_coco pipeline.config: what a model built without a graph uses.
ZOO_POSTPROCESS = {"score_thresh": float(np.float32(1e-8)), "nms_thresh": float(np.float32(0.6)), "detections_per_img": 100,
                   "clip_before_nms": False, "score_activation": "sigmoid"}
ZOO_INPUT_SIZE = 300


def _zoo_ssdlite(num_classes: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(architecture, default boxes, SSD keywords)`` of the zoo's ``ssdlite_mobilenet_v2_coco`` for ``num_classes``."""
    spec = anchor_spec(ZOO_INPUT_SIZE, feature_grid(ZOO_INPUT_SIZE, (16,)), ssd_anchor_levels())
    architecture = ssdlite_mobilenet_v2(num_classes, tuple(spec.boxes_per_location))
    return architecture.to_dict(), spec.to_dict(), {**ZOO_POSTPROCESS, "topk_candidates": num_default_boxes(spec)}


@register_model
def ssd_tf_object_detection(*, weights: Any = None, num_classes: int | None = None,
                            architecture: dict[str, Any] | None = None, default_boxes: dict[str, Any] | None = None,
                            mean: list[float] | None = None, std: list[float] | None = None,
                            coordinates: str = "asymmetric", categories: list[str] | None = None, **kwargs: Any) -> SSD:
    """An SSD of the TF Object Detection API, as its frozen graph describes it.

    ``weights``: a ``frozen_inference_graph.pb`` (the graph gives the architecture and all other keywords), or a
    checkpoint this builder's model saved (its record gives them). Without either, and without ``architecture``
    and ``default_boxes`` (as :func:`read_graph` writes them): the TF1 zoo's ``ssdlite_mobilenet_v2_coco``
    (SSDLite-MobileNetV2 at 300, 1917 anchors, sigmoid scores) for ``num_classes`` (default 91: COCO's ids).
    ``kwargs`` reach :class:`SSD` (``score_thresh``, ``nms_thresh``, ``detections_per_img``, ...).
    """
    checkpoint = fetch_weights(weights, MODEL)
    if architecture is None and checkpoint is not None and checkpoint.record is not None:
        builder = checkpoint.record.get("builder") or {}
        if builder.get("name") == MODEL and "architecture" in builder.get("kwargs", {}):
            given = {"default_boxes": default_boxes, "mean": mean, "std": std, "categories": categories, **kwargs}
            merged = {**builder["kwargs"], **{k: v for k, v in given.items() if v is not None}}
            merged.pop("categories", None)  # the checkpoint's own names (after surgery: the model's) win
            return ssd_tf_object_detection(weights=checkpoint, num_classes=num_classes, categories=categories, **merged)
    if architecture is None or default_boxes is None:
        classes = num_classes or (checkpoint.num_classes if checkpoint is not None else None) or len(COCO_CATEGORIES)
        architecture, default_boxes, zoo_kwargs = _zoo_ssdlite(classes)
        kwargs = {**zoo_kwargs, **kwargs}
        if categories is None and classes == len(COCO_CATEGORIES) and (checkpoint is None or not checkpoint.categories):
            categories = list(COCO_CATEGORIES)
    arch = Architecture.from_dict(architecture)
    spec = DefaultBoxSpec.from_dict(default_boxes)
    if checkpoint is not None:
        spec = checkpoint.default_boxes(spec, explicit=False)
        num_classes = checkpoint.config(num_classes, None)[0]
        categories = categories or checkpoint.categories
    num_classes = num_classes or arch.classification[0][-1][1].out_channels // spec.boxes_per_location[0]
    backbone = GraphBackbone(arch)
    head = GraphPredictorHead(backbone.out_channels, spec.boxes_per_location, num_classes, architecture=arch)
    transform = SSDTransform(spec.input_size, tuple(mean or (0.5,) * 3), tuple(std or (0.5,) * 3),
                             coordinates=coordinates)
    model = SSD(backbone, head, DefaultBoxGenerator(spec), transform, num_classes, categories=categories, **kwargs)
    if checkpoint is not None:
        checkpoint.load_into(model)
    # The keywords that rebuild this model without the graph, in every checkpoint it saves.
    model.remember_builder(MODEL, {"architecture": architecture, "default_boxes": spec.to_dict(), "mean": list(mean or
                                   (0.5,) * 3), "std": list(std or (0.5,) * 3), "coordinates": coordinates, **kwargs})
    return model
