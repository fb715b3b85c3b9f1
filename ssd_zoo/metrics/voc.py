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
detection claims a box first, and that is the first occurrence of the box id in score order
(``np.unique(..., return_index=True)``). Ties in score keep the order of ``update`` calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor


def _as_array(value: object, dtype: type, shape_tail: tuple[int, ...], where: str) -> np.ndarray:
    array = (value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value))
    array = array.astype(dtype, copy=False)
    if array.size == 0:
        array = array.reshape(0, *shape_tail)
    if array.ndim != 1 + len(shape_tail) or array.shape[1:] != shape_tail:
        expected = "[N" + "".join(f", {n}" for n in shape_tail) + "]"
        raise ValueError(f"{where}: expected shape {expected}, found {list(array.shape)}")
    return array


def _pad(arrays: Sequence[np.ndarray], fill: float) -> np.ndarray:
    """Stack ``[n_i, ...]`` arrays into ``[B, max n_i, ...]``, padding with ``fill``."""
    longest = max((len(a) for a in arrays), default=0)
    out = np.full((len(arrays), longest, *arrays[0].shape[1:]), fill, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):  # a copy per image; the arithmetic below is batched
        out[i, : len(a)] = a
    return out


def best_overlaps(
    det_boxes: np.ndarray,
    det_labels: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    pixel_inclusive: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the highest IoU with a ground-truth box of its class in its image.

    Args:
        det_boxes: float64 ``[B, D, 4]`` xyxy; det_labels: int64 ``[B, D]``.
        gt_boxes: float64 ``[B, G, 4]`` xyxy; gt_labels: int64 ``[B, G]`` (-1 for padding).
        pixel_inclusive: widths are ``x2 - x1 + 1`` (the devkit's pixel counting) when True,
            ``x2 - x1`` (continuous coordinates) when False.

    Returns ``(iou [B, D], index [B, D])``: the best IoU (``-inf`` when the image has no box of the
    class) and the index of that box among the image's G boxes (the first one on ties).
    The arithmetic follows ``voc_eval.py`` operation by operation, so results agree to the bit.
    """
    one = 1.0 if pixel_inclusive else 0.0
    d, g = det_boxes[:, :, None, :], gt_boxes[:, None, :, :]  # [B, D, 1, 4], [B, 1, G, 4]
    iw = np.maximum(np.minimum(g[..., 2], d[..., 2]) - np.maximum(g[..., 0], d[..., 0]) + one, 0.0)
    ih = np.maximum(np.minimum(g[..., 3], d[..., 3]) - np.maximum(g[..., 1], d[..., 1]) + one, 0.0)
    inters = iw * ih
    union = (
        (d[..., 2] - d[..., 0] + one) * (d[..., 3] - d[..., 1] + one)
        + (g[..., 2] - g[..., 0] + one) * (g[..., 3] - g[..., 1] + one)
        - inters
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inters / union  # [B, D, G]
    same_class = det_labels[:, :, None] == gt_labels[:, None, :]
    iou = np.where(same_class, iou, -np.inf)
    if iou.shape[2] == 0:
        shape = iou.shape[:2]
        return np.full(shape, -np.inf), np.zeros(shape, dtype=np.int64)
    return iou.max(axis=2), iou.argmax(axis=2)


def average_precision(
    recall: np.ndarray, precision: np.ndarray, valid: np.ndarray, use_07_metric: bool
) -> np.ndarray:
    """AP of each row of padded precision/recall curves.

    Args:
        recall, precision: float64 ``[C, L]``, each row one class's curve in score order.
        valid: bool ``[C, L]``, True on the first ``n_c`` entries of row ``c`` (its detections).
        use_07_metric: 11-point interpolated AP (VOC2007) if True, else the area under the
            monotone precision envelope (VOC2010+).

    Returns float64 ``[C]``.
    """
    if use_07_metric:
        ap = np.zeros(len(recall))
        for t in np.arange(0.0, 1.1, 0.1):  # the devkit's 11 recall levels, in its order
            p = np.where(valid & (recall >= t), precision, -1.0).max(axis=1, initial=-1.0)
            ap += np.maximum(p, 0.0) / 11.0
        return ap
    # Sentinels as in voc_eval: recall 0 then ..., 1; precision 0 then ..., 0. Padding repeats the
    # end sentinels, which adds zero-width steps only.
    zeros = np.zeros((len(recall), 1))
    mrec = np.concatenate([zeros, np.where(valid, recall, 1.0), zeros + 1.0], axis=1)
    mpre = np.concatenate([zeros, np.where(valid, precision, 0.0), zeros], axis=1)
    envelope = np.maximum.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]
    return ((mrec[:, 1:] - mrec[:, :-1]) * envelope[:, 1:]).sum(axis=1)


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
        self._dets: list[dict[str, np.ndarray]] = []  # per update: score, label, iou, gt, difficult
        self._gts: list[dict[str, np.ndarray]] = []  # per update: label, difficult

    def _read(self, predictions: Sequence[Mapping], targets: Sequence[Mapping]) -> tuple:
        """Convert and check one batch; returns lists of numpy arrays per image."""
        if len(predictions) != len(targets):
            raise ValueError(
                f"update: expected as many predictions as targets, got {len(predictions)} "
                f"predictions and {len(targets)} targets"
            )
        dets, gts = [], []
        for i, (pred, target) in enumerate(zip(predictions, targets)):
            boxes = _as_array(pred["boxes"], np.float64, (4,), f"predictions[{i}]['boxes']")
            scores = _as_array(pred["scores"], np.float64, (), f"predictions[{i}]['scores']")
            labels = _as_array(pred["labels"], np.int64, (), f"predictions[{i}]['labels']")
            gt_boxes = _as_array(target["boxes"], np.float64, (4,), f"targets[{i}]['boxes']")
            gt_labels = _as_array(target["labels"], np.int64, (), f"targets[{i}]['labels']")
            difficult = target.get("difficult")
            difficult = np.zeros(len(gt_labels), bool) if difficult is None else _as_array(
                difficult, bool, (), f"targets[{i}]['difficult']"
            )
            for name, lab in (("predictions", labels), ("targets", gt_labels)):
                if len(lab) and (lab.min() < 1 or lab.max() >= self.num_classes):
                    raise ValueError(
                        f"{name}[{i}]['labels']: expected labels in 1..{self.num_classes - 1}, "
                        f"found {lab.min()}..{lab.max()}"
                    )
            if not len(boxes) == len(scores) == len(labels):
                raise ValueError(
                    f"predictions[{i}]: boxes, scores and labels differ in length: "
                    f"{len(boxes)}, {len(scores)}, {len(labels)}"
                )
            if not len(gt_boxes) == len(gt_labels) == len(difficult):
                raise ValueError(
                    f"targets[{i}]: boxes, labels and difficult differ in length: "
                    f"{len(gt_boxes)}, {len(gt_labels)}, {len(difficult)}"
                )
            dets.append((boxes, scores, labels))
            gts.append((gt_boxes, gt_labels, difficult))
        return dets, gts

    def update(self, predictions: Sequence[Mapping], targets: Sequence[Mapping]) -> None:
        """Add one batch of per-image predictions and targets (see the class doc for the keys)."""
        dets, gts = self._read(predictions, targets)
        # Chunks of images keep the padded [B, D, G] IoU array small.
        most = max((len(d[0]) for d in dets), default=0) * max((len(g[0]) for g in gts), default=0)
        step = max(1, 2**21 // max(1, most))
        for start in range(0, len(dets), step):
            self._update_chunk(dets[start : start + step], gts[start : start + step])

    def _update_chunk(self, dets: list[tuple], gts: list[tuple]) -> None:
        if not dets:
            return
        det_boxes, scores, det_labels = (_pad([d[k] for d in dets], 0) for k in range(3))
        det_valid = _pad([np.ones(len(d[0]), bool) for d in dets], False)
        gt_boxes = _pad([g[0] for g in gts], 0)
        gt_labels = _pad([g[1] for g in gts], -1)
        gt_difficult = _pad([g[2] for g in gts], False)
        iou, index = best_overlaps(det_boxes, det_labels, gt_boxes, gt_labels, self.pixel_inclusive)
        counts = np.array([len(g[1]) for g in gts])
        first_gt = self._num_gt + np.concatenate([[0], np.cumsum(counts)[:-1]])  # [B] global ids
        if gt_difficult.shape[1]:
            best_difficult = np.take_along_axis(gt_difficult, index, axis=1)
        else:
            best_difficult = np.zeros(index.shape, bool)
        self._dets.append({
            "score": scores[det_valid],
            "label": det_labels[det_valid],
            "iou": iou[det_valid],
            "gt": (first_gt[:, None] + index)[det_valid],
            "difficult": best_difficult[det_valid],
        })
        gt_valid = gt_labels >= 0
        self._gts.append({"label": gt_labels[gt_valid], "difficult": gt_difficult[gt_valid]})
        self._num_gt += int(counts.sum())

    def compute(self) -> dict:
        """``{"map": float, "ap": {label: float}}`` (+ ``"ap_by_name"``) over everything seen."""
        num_fg = self.num_classes - 1
        det = {k: np.concatenate([d[k] for d in self._dets] or [np.zeros(0)]) for k in
               ("score", "label", "iou", "gt", "difficult")}
        gt_labels = np.concatenate([g["label"] for g in self._gts] or [np.zeros(0, np.int64)])
        gt_difficult = np.concatenate([g["difficult"] for g in self._gts] or [np.zeros(0, bool)])
        positives = gt_labels[~gt_difficult].astype(np.int64)
        npos = np.bincount(positives, minlength=self.num_classes)[1:]  # [num_fg]

        # Group detections by class, each class in decreasing score (stable: ties keep input order).
        order = np.lexsort((-det["score"], det["label"]))
        label = det["label"][order].astype(np.int64) - 1  # 0-based class row
        hit = det["iou"][order] > self.iou_threshold
        on_difficult = det["difficult"][order].astype(bool)
        claims = np.flatnonzero(hit & ~on_difficult)
        _, first = np.unique(det["gt"][order][claims], return_index=True)
        tp = np.zeros(len(order), bool)
        tp[claims[first]] = True  # the first, highest-scoring claim on each box wins
        fp = ~tp & ~(hit & on_difficult)  # matches on difficult boxes are ignored

        # Per-class cumulative counts laid out as padded rows [num_fg, longest].
        per_class = np.bincount(label, minlength=num_fg)
        starts = np.concatenate([[0], np.cumsum(per_class)[:-1]])
        position = np.arange(len(order)) - starts[label]
        tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)
        tp_c = (tp_cum - np.concatenate([[0], tp_cum])[starts][label]).astype(np.float64)
        fp_c = (fp_cum - np.concatenate([[0], fp_cum])[starts][label]).astype(np.float64)
        shape = (num_fg, int(per_class.max(initial=0)))
        recall, precision, valid = np.zeros(shape), np.zeros(shape), np.zeros(shape, bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            recall[label, position] = tp_c / npos[label]
        precision[label, position] = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
        valid[label, position] = True

        ap = average_precision(recall, precision, valid, self.use_07_metric)
        ap[npos == 0] = np.nan
        result: dict = {
            "map": float(np.mean(ap[npos > 0])) if (npos > 0).any() else float("nan"),
            "ap": {c + 1: float(ap[c]) for c in range(num_fg)},
        }
        if self.class_names is not None:
            result["ap_by_name"] = dict(zip(self.class_names, map(float, ap)))
        return result
