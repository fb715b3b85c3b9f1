"""COCO AP via pycocotools, from in-memory predictions and targets (no JSON files).

The numbers are pycocotools' own ``COCOeval`` ``stats``: AP averaged over IoU 0.50:0.05:0.95 (the
COCO leaderboard's "AP"), AP at 0.50 and 0.75, AP for small/medium/large objects (area below 32^2,
up to 96^2, above), and average recall given at most 1, 10 and 100 detections per image.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

from ssd_zoo.errors import require

STAT_NAMES: tuple[str, ...] = (
    "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # the order of COCOeval.stats


def _numpy(value: object) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def _xywh(boxes: object, where: str) -> np.ndarray:
    """xyxy ``[N, 4]`` -> COCO's xywh, float64."""
    xyxy = _numpy(boxes).astype(np.float64)
    if xyxy.size == 0:
        xyxy = xyxy.reshape(0, 4)
    if xyxy.ndim != 2 or xyxy.shape[1] != 4:
        raise ValueError(f"{where}: expected shape [N, 4], found {list(xyxy.shape)}")
    _finite(xyxy, where)
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def _finite(array: np.ndarray, where: str) -> np.ndarray:
    """``array`` itself; a ValueError naming ``where`` and the first row with a NaN or inf."""
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1) if len(array) else np.zeros(0, bool)
    if bad.any():
        raise ValueError(f"{where}: expected finite values, found {array[int(np.flatnonzero(bad)[0])].tolist()}")
    return array


def _labels(value: object, where: str, num_classes: int) -> np.ndarray:
    """Class labels as int64 ``[N]``; a ValueError naming ``where`` unless all are integers in 1..num_classes-1."""
    labels = _numpy(value).reshape(-1)
    if labels.dtype.kind not in "iuf" or (labels.dtype.kind == "f" and not np.isfinite(labels).all()):
        raise ValueError(f"{where}: expected integer class labels, found dtype {labels.dtype}")
    as_int = labels.astype(np.int64)
    bad = (as_int != labels) | (as_int < 1) | (as_int >= num_classes)
    if bad.any():
        raise ValueError(f"{where}: expected integer labels in 1..{num_classes - 1}, found {labels[bad][0]}")
    return as_int


def _same_lengths(where: str, keys: tuple[str, ...], *arrays: np.ndarray) -> None:
    if len({len(a) for a in arrays}) > 1:
        raise ValueError(f"{where}: {', '.join(keys)} differ in length: {', '.join(str(len(a)) for a in arrays)}")


class COCOEvaluator:
    """Accumulates detections and ground truth and computes COCO AP with pycocotools.

    Args:
        num_classes: classes including background; labels ``1..num_classes-1`` become COCO
            category ids unchanged.
        verbose: print pycocotools' summary table in ``compute()``.

    ``update(predictions, targets)`` takes, per image, ``{"boxes": [D, 4] xyxy, "scores": [D],
    "labels": [D]}`` and ``{"boxes": [G, 4] xyxy, "labels": [G]}``; a target may also carry
    ``area`` ``[G]`` (used for the small/medium/large split, default box area) and ``iscrowd``
    ``[G]``. ``difficult`` is not used: COCO has no such notion. ``compute()`` returns a dict of
    floats named by ``STAT_NAMES`` (``map``, ``map_50``, ``map_75``, ``map_small``, ...,
    ``mar_100``, ...); pycocotools reports -1 where there is no ground truth to score.
    """

    def __init__(self, num_classes: int, *, verbose: bool = False) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes counts background too: expected >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.verbose = verbose
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._images: list[dict] = []
        self._gt: list[dict] = []
        self._dt: list[np.ndarray] = []  # per image [D, 7]: image id, x, y, w, h, score, class

    def update(self, predictions: Sequence[Mapping], targets: Sequence[Mapping]) -> None:
        """Add one batch of per-image predictions and targets (see the class doc for the keys)."""
        if len(predictions) != len(targets):
            raise ValueError(
                f"update: expected as many predictions as targets, got {len(predictions)} "
                f"predictions and {len(targets)} targets"
            )
        for i, (pred, target) in enumerate(zip(predictions, targets)):
            boxes = _xywh(target["boxes"], f"targets[{i}]['boxes']")
            labels = _labels(target["labels"], f"targets[{i}]['labels']", self.num_classes)
            area = _numpy(target["area"]).reshape(-1) if "area" in target else boxes[:, 2] * boxes[:, 3]
            crowd = _numpy(target["iscrowd"]).reshape(-1) if "iscrowd" in target else np.zeros(len(boxes))
            _same_lengths(f"targets[{i}]", ("boxes", "labels", "area", "iscrowd"), boxes, labels, area, crowd)
            det = _xywh(pred["boxes"], f"predictions[{i}]['boxes']")
            scores = _finite(_numpy(pred["scores"]).reshape(-1, 1).astype(np.float64), f"predictions[{i}]['scores']")
            det_labels = _labels(pred["labels"], f"predictions[{i}]['labels']", self.num_classes).reshape(-1, 1)
            _same_lengths(f"predictions[{i}]", ("boxes", "scores", "labels"), det, scores, det_labels)
            image_id = len(self._images) + 1  # checked: only now does the image count
            self._images.append({"id": image_id})
            for box, label, a, c in zip(boxes.tolist(), labels.tolist(), area.tolist(), crowd.tolist()):
                self._gt.append({
                    "id": len(self._gt) + 1,  # ids must be >= 1: COCOeval treats 0 as "unmatched"
                    "image_id": image_id, "category_id": int(label), "bbox": box,
                    "area": float(a), "iscrowd": int(c),
                })
            ids = np.full((len(det), 1), float(image_id))
            self._dt.append(np.concatenate([ids, det, scores, det_labels.astype(np.float64)], axis=1))

    def compute(self) -> dict[str, float]:
        """Run COCOeval over everything seen; returns ``{name: value}`` for ``STAT_NAMES``."""
        COCO, COCOeval = require("pycocotools.coco", "coco").COCO, require("pycocotools.cocoeval", "coco").COCOeval
        categories = [{"id": c} for c in range(1, self.num_classes)]
        gt = COCO()
        gt.dataset = {"images": self._images, "annotations": self._gt, "categories": categories}
        detections = np.concatenate(self._dt) if self._dt else np.zeros((0, 7))
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            gt.createIndex()
            if len(detections):
                dt = gt.loadRes(detections)
            else:  # loadRes rejects an empty list; no detections is still a valid result
                dt = COCO()
                dt.dataset = {"images": self._images, "annotations": [], "categories": categories}
                dt.createIndex()
            evaluator = COCOeval(gt, dt, iouType="bbox")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        if self.verbose:
            print(log.getvalue())
        return dict(zip(STAT_NAMES, map(float, evaluator.stats)))
