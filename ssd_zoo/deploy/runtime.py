"""Run an exported SSD (ONNX in onnxruntime, OpenVINO IR) with the model's own I/O contract.

    >>> run = load_runner("ssd300.onnx")                 # or "ssd300.xml", backend="openvino"
    >>> detections = run([image])                        # list of float [3, H, W] in [0, 1]
    >>> run.categories, run.input_size
    >>> model = DeployedSSD(run)                        # the same, as a module with the SSD's attributes

The file is self-describing: :func:`ssd_zoo.deploy.export.export` stores the model's record (input size, default
boxes, normalisation, classes, builder) in its metadata. A runner resizes the images to the input size (the
graph normalises, decodes and runs NMS itself), and maps each image's boxes back to its own pixels.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ssd_zoo.deploy.export import THRESHOLDS_KEY
from ssd_zoo.errors import require
from ssd_zoo.models.record import RECORD_METADATA_KEY, record_from_json
from ssd_zoo.transform import SSDTransform

BACKENDS = ("onnxruntime", "openvino")


def _onnxruntime(path: Path, threads: int | None) -> tuple[Callable[[np.ndarray], list[np.ndarray]], dict[str, str], str]:
    ort = require("onnxruntime", "export")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    quantized = any(node.op_type == "QuantizeLinear" for node in require("onnx", "export").load(str(path)).graph.node)
    return (lambda batch: session.run(None, {"images": batch})), meta, "int8 (QDQ)" if quantized else "fp32"


def _openvino(path: Path, threads: int | None, precision: str | None) -> tuple[Callable, dict[str, str], str]:
    ov = require("openvino", "openvino")
    core = ov.Core()
    graph = core.read_model(str(path))
    meta = {key: str(graph.get_rt_info(["ssd_zoo", key]).astype(str))
            for key in (RECORD_METADATA_KEY, THRESHOLDS_KEY) if graph.has_rt_info(["ssd_zoo", key])}
    config: dict[str, Any] = {}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(graph, "CPU", config)
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    ran = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(hint.to_string(), hint.to_string())
    quantized = any(op.get_type_name() == "FakeQuantize" for op in graph.get_ops())
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> list[np.ndarray]:
        outputs = request.infer({0: batch})
        return [outputs[out] for out in compiled.outputs]

    return run, meta, ("int8 + " if quantized else "") + ran


class Runner:
    """``images -> list[dict]`` for an exported file: the same detections dicts as ``SSD.forward`` in eval mode.

    Attributes:
        record: the model's record (``SSD.record()``: ``input_size``, ``categories``, ``builder``, ...).
        categories: class names, index 0 background (or numbers where the model has none).
        input_size: the side ``S`` of the graph's ``[N, 3, S, S]`` input.
        precision: what the backend really runs ("fp32", "int8 (QDQ)", OpenVINO's inference precision).
        score_thresh: detections at or below it are dropped after the graph (which has its own threshold).
    """

    def __init__(self, path: Path, run: Callable[[np.ndarray], list[np.ndarray]], meta: dict[str, str],
                 precision: str, score_thresh: float | None) -> None:
        if RECORD_METADATA_KEY not in meta:
            raise ValueError(f"{path}: no ssd_zoo model record in its metadata (key {RECORD_METADATA_KEY!r}); export "
                             "it with ssd-zoo export, which stores it")
        self.path, self._run, self.precision = path, run, precision
        self.record: dict[str, Any] = record_from_json(meta[RECORD_METADATA_KEY])
        self.thresholds: dict[str, float] = json.loads(meta.get(THRESHOLDS_KEY, "{}"))
        self.num_classes = int(self.record["num_classes"])
        self.categories = self.record.get("categories") or [f"class {i}" for i in range(self.num_classes)]
        self.input_size = int(self.record["input_size"])
        self.score_thresh = score_thresh if score_thresh is not None else self.thresholds.get("score_thresh", 0.0)
        # The model's own resizing (a letterboxed model stretched would see other images than it was trained on).
        pad_fill = self.record.get("pad_fill")
        self.transform = SSDTransform(self.input_size, tuple(self.record["mean"]), tuple(self.record["std"]),
                                      resize=self.record.get("resize") or "stretch",
                                      pad_fill=None if pad_fill is None else tuple(pad_fill),
                                      coordinates=self.record.get("coordinates") or "half_pixel")

    @property
    def model_name(self) -> str | None:
        """The registered builder the file's model was made by, where it records one."""
        return (self.record.get("builder") or {}).get("name")

    def __call__(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """``images``: float ``[3, H, W]`` in [0, 1] (any sizes). Returns per image ``boxes [D, 4]`` xyxy in its
        own pixels, ``scores [D]``, ``labels [D]`` int64, best first."""
        resized, sizes = self.transform.resize(images)
        num, boxes, scores, labels = (torch.from_numpy(np.asarray(a)) for a in self._run(resized.float().cpu().numpy()))
        detections = []
        for i in range(len(sizes)):
            n = int(num[i])
            keep = scores[i, :n] > self.score_thresh
            detections.append({"boxes": boxes[i, :n][keep], "scores": scores[i, :n][keep],
                               "labels": labels[i, :n][keep].long()})
        return self.transform.postprocess(detections, sizes)


class DeployedSSD(nn.Module):
    """A :class:`Runner` as a detection module, for code that takes a model: ``model(images)`` returns what
    ``SSD.forward`` returns in eval mode, and the SSD's descriptive attributes are there (``categories``,
    ``class_names``, ``num_classes``, ``input_size``, ``thresholds``, ``score_thresh``, ``record()``).

    Inference only: ``eval()`` is a no-op, ``train()`` raises. There is no ``dense_predictions``: the graph
    decodes and runs NMS itself. ``quantized_with``: ``{"backend", "reason"}`` where
    :func:`ssd_zoo.deploy.quantize.quantize` made it, shown by ``repr``.
    """

    def __init__(self, runner: Runner, quantized_with: dict[str, str] | None = None) -> None:
        super().__init__()
        self.runner = runner
        self.quantized_with = quantized_with
        self.training = False

    def train(self, mode: bool = True) -> DeployedSSD:
        if mode:
            raise ValueError(f"{type(self).__name__}: an exported graph runs inference only; expected eval(), "
                             "found train()")
        return self

    def forward(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """``images``: float ``[3, H, W]`` in [0, 1] (any sizes; a list or a ``[B, 3, H, W]`` tensor), all run as
        one batch. Returns per image ``boxes [D, 4]`` xyxy in its own pixels, ``scores [D]``, ``labels [D]``."""
        return self.runner(images)

    @property
    def categories(self) -> list[str]:
        return self.runner.categories

    @property
    def class_names(self) -> list[str]:
        """The same list as :attr:`categories`, as on ``SSD``."""
        return self.runner.categories

    @property
    def num_classes(self) -> int:
        return self.runner.num_classes

    @property
    def input_size(self) -> int:
        return self.runner.input_size

    @property
    def score_thresh(self) -> float:
        """Detections at or below it are dropped (after the graph's own threshold, which it cannot lower)."""
        return self.runner.score_thresh

    @score_thresh.setter
    def score_thresh(self, value: float) -> None:
        self.runner.score_thresh = float(value)

    @property
    def thresholds(self) -> dict[str, float]:
        """The post-processing settings the graph was exported with, ``score_thresh`` as applied now."""
        return {**self.runner.thresholds, "score_thresh": self.runner.score_thresh}

    def record(self) -> dict[str, Any]:
        """The exported model's record (``SSD.record()``)."""
        return self.runner.record

    def extra_repr(self) -> str:
        text = f"precision={self.runner.precision!r}, input_size={self.input_size}, num_classes={self.num_classes}"
        return text + (f", quantized_with={self.quantized_with}" if self.quantized_with else "")


def load_runner(path: str | os.PathLike, backend: str | None = None, *, score_thresh: float | None = None,
                threads: int | None = None, precision: str | None = None) -> Runner:
    """A :class:`Runner` for an exported file (``.onnx``: onnxruntime; ``.xml``: OpenVINO; or ``backend``).

    ``precision``: OpenVINO's ``INFERENCE_PRECISION_HINT`` ("f32" forces float32; default: the device's
    choice, bf16 on CPUs that have it). Raises FileNotFoundError / ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path}: not found")
    backend = backend or ("openvino" if path.suffix == ".xml" else "onnxruntime")
    if backend not in BACKENDS:
        raise ValueError(f"{path}: expected backend {' or '.join(BACKENDS)}, found {backend!r}")
    try:
        run, meta, ran = _onnxruntime(path, threads) if backend == "onnxruntime" else _openvino(path, threads, precision)
    except ImportError:
        raise
    except Exception as error:  # the runtime's own parse error: say which file
        raise ValueError(f"{path}: {backend} cannot read it ({str(error).splitlines()[0][:200]})") from None
    return Runner(path, run, meta, ran, score_thresh)
