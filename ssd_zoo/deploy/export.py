"""ONNX export of a whole SSD: normalisation, network, box decoding and per-class NMS in one graph.

The exported graph has one input and four outputs (K = the model's ``detections_per_img``, N dynamic):

- ``images``: float32 ``[N, 3, S, S]`` RGB in [0, 1], at the model's fixed input size S (resize first);
- ``num_detections``: int64 ``[N]``, how many rows of the next three are real;
- ``boxes``: float32 ``[N, K, 4]`` xyxy in pixels of the ``S x S`` input;
- ``scores``: float32 ``[N, K]``, best first;
- ``labels``: int64 ``[N, K]`` in ``[1, num_classes)``;

rows past ``num_detections`` are zero. The post-processing is the eager model's (softmax, decode, clip,
score threshold, top-k candidates per class, per-class NMS, best K per image), written with fixed shapes
so that the only data-dependent step is ONNX's ``NonMaxSuppression``, which does per-(image, class) NMS
natively: every (image, class) pair is one of its "batches".
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from ssd_zoo.errors import require
from ssd_zoo.models.record import RECORD_METADATA_KEY, record_to_json
from ssd_zoo.models.ssd import SSD
from ssd_zoo.ops.postprocess import Thresholds, class_scores_and_boxes, clip_boxes

OUTPUT_NAMES = ["num_detections", "boxes", "scores", "labels"]
THRESHOLDS_KEY = "ssd_zoo.thresholds"  # the post-processing settings the graph was exported with (JSON)
FORMATS = {"onnx": ".onnx", "openvino": ".xml"}


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` with one class per batch entry; eager forward for tracing and tests.

    Inputs: ``boxes`` ``[P, k, 4]`` xyxy and ``scores`` ``[P, 1, k]`` for P independent groups.
    Output: ``[S, 3]`` int64 rows ``(group, 0, candidate)`` of the boxes kept, as ONNX defines it.
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_group: int, iou_thresh: float, score_thresh: float) -> Tensor:  # type: ignore[override]
        scores = scores[:, 0]  # (P, k)
        candidate = scores > score_thresh
        group, index = candidate.nonzero(as_tuple=True)
        kept = batched_nms(boxes[group, index], scores[group, index], group, iou_thresh)
        # batched_nms keeps all boxes of a group that survive, so max_per_group = k never truncates.
        return torch.stack([group[kept], torch.zeros_like(kept), index[kept]], dim=1)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_group: int, iou_thresh: float, score_thresh: float):  # noqa: ANN001, ANN205
        return g.op(
            "NonMaxSuppression", boxes, scores,
            g.op("Constant", value_t=torch.tensor([max_per_group], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou_thresh], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_thresh], dtype=torch.float32)),
        )


def padded_detections(scores: Tensor, boxes: Tensor, image_size: tuple[int, int],
                      **thresholds: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`ssd_zoo.ops.postprocess.select_detections` with fixed-size, zero-padded outputs.

    Args: as ``select_detections``: ``scores [B, A, C]`` and ``boxes [B, A, 4]`` from
    :meth:`ssd_zoo.SSD.dense_predictions`, ``image_size = (H, W)`` of the network input; ``thresholds``: any of
    :class:`~ssd_zoo.ops.postprocess.Thresholds`' keywords (the others at their defaults; another name raises).

    Returns:
        ``(num_detections [B] int64, boxes [B, K, 4], scores [B, K], labels [B, K] int64)`` with
        ``K = detections_per_img``, each image's detections best first, zeros past ``num_detections``.
    """
    settings = Thresholds(**thresholds)
    num_anchors, num_classes = scores.shape[1], scores.shape[2]
    scores, boxes = class_scores_and_boxes(scores, boxes, image_size, clip=settings.clip_before_nms)

    # Per image and class, the best k candidates; those at or below the threshold get score -1.
    k = min(settings.topk_candidates, int(num_anchors))  # a Python int: ONNX NonMaxSuppression takes it as a constant
    top_scores, top_index = scores.masked_fill(scores <= settings.score_thresh, -1.0).topk(k, dim=-1)  # (B, C-1, k)
    candidates = torch.gather(
        boxes[:, None].expand(-1, num_classes - 1, -1, -1), 2, top_index[..., None].expand(-1, -1, -1, 4)
    )  # (B, C-1, k, 4)

    # NMS per (image, class) pair; mark the survivors in a dense (B, C-1, k) mask.
    selected = _NonMaxSuppression.apply(
        candidates.flatten(0, 1), top_scores.flatten(0, 1)[:, None], k, settings.nms_thresh, settings.score_thresh
    )  # (S, 3): pair, 0, candidate
    flat_scores = top_scores.flatten()
    survivor = torch.zeros_like(flat_scores).scatter(0, selected[:, 0] * k + selected[:, 2], 1.0)
    kept_scores = torch.where(survivor > 0, flat_scores, -1.0).view_as(top_scores).flatten(1)  # (B, (C-1)*k)

    # Best K survivors per image; pad when fewer than K candidates exist at all.
    best_scores, best = kept_scores.topk(min(settings.detections_per_img, kept_scores.shape[1]), dim=1)
    valid = best_scores > settings.score_thresh
    best_boxes = torch.gather(candidates.flatten(1, 2), 1, best[..., None].expand(-1, -1, 4))
    best_boxes = best_boxes if settings.clip_before_nms else clip_boxes(best_boxes, image_size)
    labels = torch.div(best, k, rounding_mode="floor") + 1
    pad = settings.detections_per_img - best.shape[1]
    out_boxes = F.pad(torch.where(valid[..., None], best_boxes, 0.0), (0, 0, 0, pad))
    out_scores = F.pad(torch.where(valid, best_scores, 0.0), (0, pad))
    out_labels = F.pad(torch.where(valid, labels, 0), (0, pad))
    return valid.sum(dim=1), out_boxes, out_scores, out_labels


class ExportableSSD(nn.Module):
    """``SSD`` for deployment: ``images [N, 3, S, S]`` in [0, 1] -> the padded outputs of the module docstring.

    Shares ``model``'s parameters; no resizing (the caller resizes to ``S x S``), no per-image lists.
    """

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        model = self.model
        size = model.input_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"ExportableSSD: expected images [N, 3, {size}, {size}], found {list(images.shape)}")
        dense = model.dense_predictions(images)
        return padded_detections(dense["scores"], dense["boxes"], (size, size), **model.thresholds)


def export_onnx(model: SSD, path: str | os.PathLike, *, opset: int = 17, batch_size: int = 2) -> None:
    """Write ``model`` (eval mode, CPU, float32) as an ONNX graph with NMS inside to ``path``.

    Args:
        model: any ssd_zoo ``SSD``; it is not modified.
        path: the ``.onnx`` file to write.
        opset: ONNX opset (``NonMaxSuppression`` needs 10 or later).
        batch_size: batch of the example input used for tracing; the exported batch axis is dynamic.

    Inputs and outputs are described in the module docstring of :mod:`ssd_zoo.deploy.export`.
    """
    if not isinstance(model, SSD):
        raise TypeError(f"export_onnx: expected an ssd_zoo SSD, found {type(model).__name__}")
    if opset < 10:
        raise ValueError(f"export_onnx: NonMaxSuppression needs opset >= 10, found opset={opset}")
    was_training, device = model.training, next(model.parameters()).device
    wrapper = ExportableSSD(model.eval().cpu())
    # A random example, so that the traced NMS keeps some boxes; the graph does not depend on it.
    example = torch.rand(batch_size, 3, model.input_size, model.input_size, generator=torch.Generator().manual_seed(0))
    dynamic = {name: {0: "batch"} for name in ["images", *OUTPUT_NAMES]}
    try:
        # The TorchScript exporter: the torch.export-based one needs onnxscript and a custom translation for
        # NonMaxSuppression. Its tracer warns wherever a shape becomes a Python number, which at a fixed
        # input size is intended, and it warns that it is the legacy exporter.
        with torch.no_grad(), warnings.catch_warnings():
            for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            torch.onnx.export(
                wrapper, (example,), str(path), dynamo=False, opset_version=opset,
                input_names=["images"], output_names=OUTPUT_NAMES, dynamic_axes=dynamic,
            )
    finally:
        model.train(was_training).to(device)


def metadata(model: SSD) -> dict[str, str]:
    """What an exported file carries about its model: ``{RECORD_METADATA_KEY: record JSON, THRESHOLDS_KEY: JSON}``."""
    return {RECORD_METADATA_KEY: record_to_json(model.record()), THRESHOLDS_KEY: json.dumps(model.thresholds)}


def _write_onnx_metadata(path: str | os.PathLike, entries: dict[str, str]) -> None:
    onnx = require("onnx", "export")
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in entries.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))


def calibration_batches(model: SSD, images: Sequence[Tensor], batch_size: int = 8) -> list[Tensor]:
    """``images`` (float ``[3, H, W]`` in [0, 1]) resized to the model's input, ``[n, 3, S, S]`` float32 batches:
    what an exported graph takes."""
    if not images:
        raise ValueError("calibration: expected images (a few dozen photos), found none")
    batches = [model.transform.resize(list(images[i:i + batch_size]))[0] for i in range(0, len(images), batch_size)]
    return [b.float().contiguous() for b in batches]


def _quantize_onnx(source: Path, path: Path, batches: list[Tensor]) -> None:
    """onnxruntime's static QDQ int8 of the convolutions of ``source`` -> ``path``, calibrated on ``batches``
    (min/max per tensor for activations, per output channel for weights). Decoding and NMS stay float."""
    require("onnxruntime", "export")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[Tensor] = iter(batches)

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch.numpy()}

    quantize_static(str(source), str(path), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def export(model: SSD, path: str | os.PathLike, *, format: str = "onnx", int8: bool = False,
           calibration_images: Sequence[Tensor] | None = None, opset: int = 17) -> Path:
    """Write ``model`` with decoding and NMS inside as ``format`` ("onnx": one ``.onnx`` file; "openvino": IR,
    ``.xml`` + ``.bin``), float32 or, with ``int8``, statically quantized on ``calibration_images`` (ONNX:
    onnxruntime QDQ; OpenVINO: NNCF). Inputs/outputs as in the module docstring; the file's metadata holds the
    model's record (:data:`~ssd_zoo.models.record.RECORD_METADATA_KEY`) and thresholds, which :func:`ssd_zoo.deploy.runtime.load_runner` reads."""
    if format not in FORMATS:
        raise ValueError(f"export: expected format {' or '.join(FORMATS)}, found {format!r}")
    if int8 and not calibration_images:
        raise ValueError("export --int8: expected calibration images (a folder of photos), found none")
    path = Path(path)
    if format == "openvino":
        if path.suffix != ".xml":
            raise ValueError(f"export --format openvino: expected an .xml path (the IR; its .bin goes next to it), "
                             f"found {path}")
        require("openvino", "openvino")
        if int8:
            require("nncf", "openvino")
    batches = calibration_batches(model, calibration_images) if int8 else []
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = path if format == "onnx" and not int8 else Path(folder) / "model.onnx"
        export_onnx(model, onnx_path, opset=opset)
        if format == "onnx":
            if int8:
                _quantize_onnx(onnx_path, path, batches)
            _write_onnx_metadata(path, metadata(model))
        else:
            _export_openvino(model, onnx_path, path, batches if int8 else None)
    return path


def _export_openvino(model: SSD, onnx_path: Path, path: Path, batches: list[Tensor] | None) -> None:
    """OpenVINO IR at ``path`` (``.xml`` and ``.bin``) from the ONNX graph; int8 by NNCF when ``batches``."""
    ov = require("openvino", "openvino")
    graph = ov.convert_model(str(onnx_path))
    if batches is not None:
        nncf = require("nncf", "openvino")
        # The detection part (softmax, decoding, NMS) stays float: NNCF quantizes convolutions' inputs only.
        graph = nncf.quantize(graph, nncf.Dataset(batches, lambda b: b.numpy()), subset_size=sum(map(len, batches)))
    for key, value in metadata(model).items():
        graph.set_rt_info(value, ["ssd_zoo", key])
    ov.save_model(graph, str(path), compress_to_fp16=False)
