"""Pascal VOC mean average precision, vectorised, with the official devkit's semantics.

Semantics are those of the VOC devkit as reimplemented in py-faster-rcnn's ``voc_eval.py``. Per
class, detections are taken in decreasing score order; each is compared with the ground truth of
its class in its image and takes the box of highest IoU. It is

- a true positive if that IoU is ``> iou_threshold`` and the box is not difficult and not yet
  claimed by a higher-scoring detection;
- ignored (neither TP nor FP) if that IoU is ``> iou_threshold`` and the box is difficult;
- a false positive otherwise (IoU too low, no ground truth, or the box already claimed).

Difficult boxes are not counted as positives. AP is the 11-point interpolated AP of VOC2007
(``use_07_metric=True``) or the area under the monotone precision envelope (VOC2010 onwards).

Why no loop over detections is needed: which box a detection takes depends only on the detection
(highest IoU, not "highest IoU among free boxes"), so the only order-dependent part is which
detection claims a box first, and that is the first claim on the box in score order. Ties in
score keep the order of ``update`` calls.

Where the time goes on a VOC07 test run (4952 images x 100 detections, 50-100x faster than a loop
over detections): ``update`` reads a batch with one ``torch.cat`` per key (no numpy work per image)
and, every ~65k detections, matches the pending batches at once, each detection only against the
boxes of its (image, class) group, while the arrays are still cache-sized; ``compute`` sorts all
detections once and integrates the curves of all classes together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ssd_zoo.metrics.voc_ops import average_precision, grouped_best_overlaps, score_order

__all__ = ["VOCEvaluator", "average_precision"]

_PAD, _TP, _FP, _IGNORED, _CLAIM = 0, 1, 2, 3, 4  # what a detection counts as (int8 codes)


def _as_array(value: object, dtype: type | None, shape_tail: tuple[int, ...], where: str) -> np.ndarray:
    """``value`` as a numpy ``[N, *shape_tail]`` array of ``dtype`` (None: its own), or a ValueError."""
    array = (value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value))
    array = array.astype(dtype or array.dtype, copy=False)
    if array.size == 0:
        array = array.reshape(0, *shape_tail)
    if array.ndim != 1 + len(shape_tail) or array.shape[1:] != shape_tail:
        expected = "[N" + "".join(f", {n}" for n in shape_tail) + "]"
        raise ValueError(f"{where}: expected shape {expected}, found {list(array.shape)}")
    return array


def _gather(
    items: Sequence[Mapping], key: str, name: str, dtype: type | None, shape_tail: tuple[int, ...] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """``item[key]`` of every image, concatenated: ``(array [sum n_i, *shape_tail], lengths int64 [B])``.

    ``dtype`` None keeps the input's (float32 boxes and scores stay float32: exact, and half the
    bytes). Tensors of the right shape take one ``torch.cat``; anything else goes image by image,
    which names the first bad entry as ``name[i]['key']``.
    """
    values = [item[key] for item in items]
    try:
        lengths = np.array([v.shape[0] for v in values], dtype=np.int64)
        array = torch.cat(values).detach().cpu().numpy()
        if array.shape[1:] == shape_tail and array.ndim == 1 + len(shape_tail):
            return array.astype(dtype or array.dtype, copy=False), lengths
    except (AttributeError, IndexError, RuntimeError, TypeError, ValueError):  # not all tensors of [N, ...]
        pass
    arrays = [_as_array(v, dtype, shape_tail, f"{name}[{i}]['{key}']") for i, v in enumerate(values)]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    return (np.concatenate(arrays) if arrays else np.zeros((0, *shape_tail), dtype or np.float32)), lengths


def _check_labels(labels: np.ndarray, lengths: np.ndarray, name: str, num_classes: int) -> None:
    """Raise naming the first image (``name[i]``) with a label outside ``1..num_classes-1``."""
    if len(labels) == 0 or (labels.min() >= 1 and labels.max() < num_classes):
        return
    bad = np.flatnonzero((labels < 1) | (labels >= num_classes))[0]
    i = int(np.searchsorted(np.cumsum(lengths), bad, side="right"))
    own = labels[lengths[:i].sum():][: lengths[i]]
    raise ValueError(
        f"{name}[{i}]['labels']: expected labels in 1..{num_classes - 1}, found {own.min()}..{own.max()}"
    )


def _check_values(array: np.ndarray, lengths: np.ndarray, name: str, key: str, integer: bool = False) -> None:
    """Raise naming the first image (``name[i]['key']``) holding a NaN/inf, or (``integer``) a fraction."""
    if len(array) == 0:
        return
    flat = array.reshape(len(array), -1)
    if array.dtype.kind == "f":
        bad = ~np.isfinite(flat).all(axis=1)
        if integer:
            bad |= (flat != np.round(flat)).any(axis=1)
    elif array.dtype.kind in "iub":
        return
    else:
        raise ValueError(f"{name}[0]['{key}']: expected numbers, found dtype {array.dtype}")
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        i = int(np.searchsorted(np.cumsum(lengths), row, side="right"))
        expected = "integer class labels" if integer else "finite values"
        raise ValueError(f"{name}[{i}]['{key}']: expected {expected}, found {flat[row].tolist()}")


def _check_lengths(name: str, keys: tuple[str, str, str], *lengths: np.ndarray) -> None:
    """Raise naming the first image (``name[i]``) whose three arrays differ in length."""
    a, b, c = lengths
    bad = np.flatnonzero((a != b) | (a != c))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{name}[{i}]: {', '.join(keys)} differ in length: {a[i]}, {b[i]}, {c[i]}")


class VOCEvaluator:
    """Accumulates detections and ground truth over a dataset and computes VOC mAP.

    Args:
        num_classes: classes including background, as the model counts them (21 for VOC);
            labels ``1..num_classes-1`` are evaluated.
        use_07_metric: 11-point interpolated AP (VOC2007 test, the number SSD papers report) if
            True; area under the precision envelope (VOC2010-2012 devkit) if False.
        iou_threshold: a detection matches a box when IoU is strictly greater than this.
        pixel_inclusive: count box sides as ``x2 - x1 + 1`` pixels like the devkit (True) or as
            continuous ``x2 - x1`` like Detectron and torchvision (False).
        class_names: names of labels ``1..num_classes-1`` (``num_classes - 1`` of them), to also
            report AP by name.

    ``update(predictions, targets)`` takes one batch: per image, a prediction ``{"boxes": [D, 4]
    xyxy, "scores": [D], "labels": [D]}`` as the model returns it and a target ``{"boxes": [G, 4]
    xyxy, "labels": [G], "difficult": [G] (optional)}`` as the datasets give it, boxes in the same
    pixel coordinates. ``compute()`` returns ``{"map": float, "ap": {label: float}}`` (plus
    ``"ap_by_name": {name: float}`` with class names). A class without non-difficult ground truth
    has AP ``nan`` and is left out of ``map``; ``map`` is ``nan`` if no class has ground truth.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        use_07_metric: bool = True,
        iou_threshold: float = 0.5,
        pixel_inclusive: bool = True,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes counts background too: expected >= 2, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes - 1:
            raise ValueError(
                f"class_names: expected {num_classes - 1} names (labels 1..{num_classes - 1}, "
                f"no background), got {len(class_names)}"
            )
        self.num_classes = num_classes
        self.use_07_metric = use_07_metric
        self.iou_threshold = iou_threshold
        self.pixel_inclusive = pixel_inclusive
        self.class_names = tuple(class_names) if class_names is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._num_gt = 0
        self._npos = np.zeros(self.num_classes, dtype=np.int64)  # non-difficult boxes per label
        self._pending: list[dict[str, np.ndarray]] = []  # checked batches, not matched yet
        self._pending_images = self._pending_size = 0  # their images and detections
        # Per chunk of matched batches, per detection: label, score, outcome (_FP, _IGNORED or _CLAIM)
        # and the dataset-wide id of the box it claims (meaningful for claims only).
        self._matched: list[dict[str, np.ndarray]] = []

    def update(self, predictions: Sequence[Mapping], targets: Sequence[Mapping]) -> None:
        """Add one batch of per-image predictions and targets (see the class doc for the keys)."""
        if len(predictions) != len(targets):
            raise ValueError(
                f"update: expected as many predictions as targets, got {len(predictions)} "
                f"predictions and {len(targets)} targets"
            )
        boxes, n_boxes = _gather(predictions, "boxes", "predictions", None, (4,))
        scores, n_scores = _gather(predictions, "scores", "predictions", None)
        labels, n_labels = _gather(predictions, "labels", "predictions", None)
        gt_boxes, n_gt_boxes = _gather(targets, "boxes", "targets", None, (4,))
        gt_labels, n_gt = _gather(targets, "labels", "targets", None)
        for array, lengths, name, key, integer in (
                (boxes, n_boxes, "predictions", "boxes", False), (scores, n_scores, "predictions", "scores", False),
                (labels, n_labels, "predictions", "labels", True), (gt_boxes, n_gt_boxes, "targets", "boxes", False),
                (gt_labels, n_gt, "targets", "labels", True)):
            _check_values(array, lengths, name, key, integer)  # NaN scores would sort anywhere, 1.5 be label 1
        labels, gt_labels = labels.astype(np.int64, copy=False), gt_labels.astype(np.int64, copy=False)
        if all(t.get("difficult") is None for t in targets):
            gt_difficult, n_difficult = np.zeros(len(gt_labels), bool), n_gt
        else:
            difficult = [t.get("difficult") for t in targets]  # a target without it has none
            targets = [{"difficult": torch.zeros(n, dtype=torch.bool) if d is None else d}
                       for d, n in zip(difficult, n_gt.tolist())]
            gt_difficult, n_difficult = _gather(targets, "difficult", "targets", bool)
        _check_labels(labels, n_labels, "predictions", self.num_classes)
        _check_labels(gt_labels, n_gt, "targets", self.num_classes)
        _check_lengths("predictions", ("boxes", "scores", "labels"), n_boxes, n_scores, n_labels)
        _check_lengths("targets", ("boxes", "labels", "difficult"), n_gt_boxes, n_gt, n_difficult)
        images = self._pending_images + np.arange(len(predictions))  # numbered within the pending ones
        self._pending.append({
            "boxes": boxes, "score": scores, "label": labels, "image": np.repeat(images, n_labels),
            "gt_boxes": gt_boxes, "gt_label": gt_labels, "gt_difficult": gt_difficult,
            "gt_image": np.repeat(images, n_gt),
        })
        self._pending_images += len(predictions)
        self._pending_size += len(labels)
        if self._pending_size >= 2**16:  # match in chunks: few numpy calls, arrays still in cache
            self._match_pending()

    def _match_pending(self) -> None:
        """Match the pending batches: each detection only against its (image, class) group's boxes.

        A miss is a false positive, a match on a difficult box is ignored, any other match claims
        its box; ``compute`` decides which claim on a box comes first.
        """
        if not self._pending:
            return
        chunk = {k: np.concatenate([b[k] for b in self._pending]) for k in self._pending[0]}
        iou, index = grouped_best_overlaps(
            chunk["boxes"], chunk["image"] * self.num_classes + chunk["label"],
            chunk["gt_boxes"], chunk["gt_image"] * self.num_classes + chunk["gt_label"],
            self._pending_images * self.num_classes, self.pixel_inclusive,
        )
        matched = np.flatnonzero(iou > self.iou_threshold)  # nan and -inf (no box) are misses
        outcome = np.full(len(iou), _FP, np.int8)
        outcome[matched] = np.where(chunk["gt_difficult"][index[matched]], _IGNORED, _CLAIM)
        self._matched.append({"label": chunk["label"], "score": chunk["score"], "outcome": outcome,
                              "box": index + self._num_gt})
        self._npos += np.bincount(chunk["gt_label"][~chunk["gt_difficult"]], minlength=self.num_classes)
        self._num_gt += len(chunk["gt_label"])
        self._pending, self._pending_images, self._pending_size = [], 0, 0

    def compute(self, use_07_metric: bool | None = None) -> dict:
        """``{"map": float, "ap": {label: float}}`` (+ ``"ap_by_name"``) over everything seen.

        ``use_07_metric`` overrides the constructor's for this call, so one evaluator (one matching pass)
        gives both the VOC2007 and the VOC2010+ numbers."""
        self._match_pending()
        num_fg, npos = self.num_classes - 1, self._npos[1:]  # [num_fg]
        empty = {"label": np.zeros(0, np.int64), "score": np.zeros(0, np.float32),
                 "outcome": np.zeros(0, np.int8), "box": np.zeros(0, np.int64)}
        det = {k: np.concatenate([empty[k]] + [b[k] for b in self._matched]) for k in empty}  # [N] each

        # Group detections by class, each class in decreasing score (stable: ties keep input order);
        # the first claim on each box is the true positive, later ones are false positives.
        order = score_order(det["label"], det["score"])
        outcome = det["outcome"][order]
        claims = np.flatnonzero(outcome == _CLAIM)
        first = np.full(self._num_gt, len(order))  # [M] position of the first claim on each box
        np.minimum.at(first, det["box"][order[claims]], claims)
        outcome[claims] = _FP
        outcome[first[first < len(order)]] = _TP

        # Padded rows [num_fg, longest]: row c holds label c + 1's detections in score order.
        per_class = np.bincount(det["label"] - 1, minlength=num_fg)
        longest = int(per_class.max(initial=0))
        row_offset = np.arange(num_fg) * longest - (np.cumsum(per_class) - per_class)
        rows = np.full((num_fg, longest), _PAD, np.int8)
        rows.ravel()[np.arange(len(order)) + np.repeat(row_offset, per_class)] = outcome
        tp, fp = np.cumsum(rows == _TP, axis=1), np.cumsum(rows == _FP, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = tp / npos[:, None]
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)

        use_07 = self.use_07_metric if use_07_metric is None else use_07_metric
        ap = average_precision(recall, precision, rows != _PAD, use_07)
        ap[npos == 0] = np.nan
        result: dict = {
            "map": float(np.mean(ap[npos > 0])) if (npos > 0).any() else float("nan"),
            "ap": {c + 1: float(ap[c]) for c in range(num_fg)},
        }
        if self.class_names is not None:
            result["ap_by_name"] = dict(zip(self.class_names, map(float, ap)))
        return result
