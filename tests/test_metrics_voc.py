"""VOCEvaluator: hand-computed cases and parity with a per-detection loop in voc_eval's style."""

import math

import numpy as np
import pytest
import torch

from benchmarks.reference import voc_class_aps
from ssd_zoo.metrics import voc
from ssd_zoo.metrics.voc import VOCEvaluator
from ssd_zoo.metrics.voc_ops import grouped_best_overlaps


def pred(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def gt(boxes, labels, difficult=None):
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
    if difficult is not None:
        target["difficult"] = torch.tensor(difficult, dtype=torch.bool)
    return target


def evaluate(predictions, targets, num_classes=3, **kw):
    evaluator = VOCEvaluator(num_classes, **kw)
    evaluator.update(predictions, targets)
    return evaluator.compute()


A, B, C = [0, 0, 9, 9], [20, 20, 39, 29], [50, 0, 59, 59]


def test_perfect_detections_score_one():
    targets = [gt([A, B], [1, 2]), gt([C], [1])]
    predictions = [pred([A, B], [0.9, 0.8], [1, 2]), pred([C], [0.7], [1])]
    for use_07 in (True, False):
        result = evaluate(predictions, targets, use_07_metric=use_07)
        assert result["map"] == pytest.approx(1.0)
        assert result["ap"] == {1: pytest.approx(1.0), 2: pytest.approx(1.0)}


def test_duplicate_is_a_false_positive():
    # Class 1: TP (0.9), duplicate FP (0.8); one box, so recall hits 1 at precision 1 first.
    targets = [gt([A], [1])]
    result = evaluate([pred([A, A], [0.9, 0.8], [1, 1])], targets, use_07_metric=False)
    assert result["ap"][1] == pytest.approx(1.0)
    # Two boxes, detections: TP, FP(dup), TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    targets = [gt([A, C], [1, 1])]
    result = evaluate([pred([A, A, C], [0.9, 0.8, 0.7], [1, 1, 1])], targets, use_07_metric=False)
    assert result["ap"][1] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_difficult_match_is_ignored_and_not_a_positive():
    targets = [gt([A, C], [1, 1], difficult=[False, True])]
    # Detection on the difficult box is ignored, even though it scores highest.
    result = evaluate([pred([C, A], [0.9, 0.8], [1, 1])], targets)
    assert result["ap"][1] == pytest.approx(1.0)
    # Missing the difficult box costs nothing either.
    result = evaluate([pred([A], [0.8], [1])], targets)
    assert result["ap"][1] == pytest.approx(1.0)
    # A miss on the only non-difficult box: AP 0.
    result = evaluate([pred([C], [0.9], [1])], targets)
    assert result["ap"][1] == pytest.approx(0.0)


def test_class_without_ground_truth_is_nan_and_left_out_of_map():
    targets = [gt([A], [1])]
    result = evaluate([pred([A, B], [0.9, 0.8], [1, 2])], targets, class_names=["cat", "dog"])
    assert result["ap"][1] == pytest.approx(1.0)
    assert math.isnan(result["ap"][2])
    assert result["map"] == pytest.approx(1.0)
    assert set(result["ap_by_name"]) == {"cat", "dog"}


def test_class_with_ground_truth_but_no_detection_scores_zero():
    result = evaluate([pred([A], [0.9], [1])], [gt([A, B], [1, 2])])
    assert result["ap"] == {1: pytest.approx(1.0), 2: 0.0}
    assert result["map"] == pytest.approx(0.5)


def test_eleven_point_versus_area():
    # One box found at rank 2 behind a false positive: precision 1/2 at recall 1.
    result_07 = evaluate([pred([B, A], [0.9, 0.8], [1, 1])], [gt([A], [1])], use_07_metric=True)
    result_10 = evaluate([pred([B, A], [0.9, 0.8], [1, 1])], [gt([A], [1])], use_07_metric=False)
    assert result_07["ap"][1] == pytest.approx(0.5)  # 11 recall levels, each precision 1/2
    assert result_10["ap"][1] == pytest.approx(0.5)
    # Two boxes, only one found: recall 1/2 at precision 1.
    targets = [gt([A, C], [1, 1])]
    result_07 = evaluate([pred([A], [0.9], [1])], targets, use_07_metric=True)
    result_10 = evaluate([pred([A], [0.9], [1])], targets, use_07_metric=False)
    assert result_07["ap"][1] == pytest.approx(6 / 11)  # recall levels 0, 0.1, ..., 0.5
    assert result_10["ap"][1] == pytest.approx(0.5)


def test_pixel_conventions_differ_at_the_threshold():
    # Ground truth [0, 0, 10, 10], detection [0, 0, 10, 5]: continuous IoU 50/100 = 0.5 is not
    # > 0.5, but with the devkit's +1 widths it is 66/121 = 0.545.
    targets, predictions = [gt([[0, 0, 10, 10]], [1])], [pred([[0, 0, 10, 5]], [0.9], [1])]
    assert evaluate(predictions, targets, pixel_inclusive=True)["ap"][1] == pytest.approx(1.0)
    assert evaluate(predictions, targets, pixel_inclusive=False)["ap"][1] == 0.0


def test_empty_inputs():
    assert math.isnan(evaluate([], [])["map"])
    empty = pred([], [], [])
    result = evaluate([empty, empty], [gt([A], [1]), gt([], [])])
    assert result["ap"][1] == 0.0 and math.isnan(result["ap"][2])
    result = evaluate([pred([A], [0.5], [2])], [gt([], [])])
    assert math.isnan(result["map"])


def test_bad_input_names_the_image_and_key():
    evaluator = VOCEvaluator(3)
    with pytest.raises(ValueError, match=r"predictions\[1\]\['labels'\]: expected labels in 1..2"):
        evaluator.update([pred([A], [0.5], [1]), pred([A], [0.5], [3])], [gt([], []), gt([], [])])
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\]: expected shape \[N, 4\]"):
        evaluator.update([pred([], [], [])], [{"boxes": torch.zeros(2, 3), "labels": [1, 1]}])
    with pytest.raises(ValueError, match="class_names: expected 2 names"):
        VOCEvaluator(3, class_names=["a"])


# --- parity with a per-detection loop, written like py-faster-rcnn's voc_eval (benchmarks/reference.py) ---


def random_batch(rng, num_images, num_classes, max_detections=10):
    """Clustered boxes on a small integer grid: many overlaps, ties in IoU and score, empties.

    Each image has 0..5 boxes and ``0..max_detections - 1`` detections."""
    predictions, targets = [], []
    for _ in range(num_images):
        g = int(rng.integers(0, 6))
        xy = rng.integers(0, 30, (g, 2))
        wh = rng.integers(1, 20, (g, 2))
        gt_boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        gt_labels = rng.integers(1, num_classes, g)
        difficult = rng.random(g) < 0.2
        d = int(rng.integers(0, max_detections))
        src = gt_boxes[rng.integers(0, g, d)] if g else np.zeros((d, 4), np.float32)
        jitter = rng.integers(-4, 5, (d, 4)) * (rng.random((d, 1)) < 0.8)
        boxes = np.sort((src + jitter).reshape(d, 2, 2), axis=1).reshape(d, 4)
        boxes = np.where(rng.random((d, 1)) < 0.2, rng.integers(0, 40, (d, 4)), boxes)
        scores = rng.integers(0, 8, d) / 8  # coarse scores: many ties
        labels = np.where(rng.random(d) < 0.8, gt_labels[rng.integers(0, g, d)] if g else 1,
                          rng.integers(1, num_classes, d))
        predictions.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                            "scores": torch.tensor(scores, dtype=torch.float32),
                            "labels": torch.tensor(labels, dtype=torch.int64)})
        targets.append({"boxes": torch.tensor(gt_boxes), "labels": torch.tensor(gt_labels),
                        "difficult": torch.tensor(difficult)})
    return predictions, targets


@pytest.mark.parametrize("use_07_metric", [True, False])
@pytest.mark.parametrize("pixel_inclusive", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_per_detection_reference(use_07_metric, pixel_inclusive, seed):
    rng = np.random.default_rng(seed)
    num_classes = 4
    predictions, targets = random_batch(rng, 25, num_classes)
    evaluator = VOCEvaluator(num_classes, use_07_metric=use_07_metric, pixel_inclusive=pixel_inclusive)
    for start in range(0, 25, 7):  # several updates, as over a data loader
        evaluator.update(predictions[start : start + 7], targets[start : start + 7])
    result = evaluator.compute()
    expected = voc_class_aps(predictions, targets, num_classes, use_07_metric=use_07_metric,
                             pixel_inclusive=pixel_inclusive)
    for cls in range(1, num_classes):
        assert result["ap"][cls] == pytest.approx(expected[cls], abs=1e-12, nan_ok=True), cls


def test_chunked_matching_matches_per_detection_reference(monkeypatch):
    """Over 2**16 detections ``update`` matches the pending batches in chunks: box ids, positives and the
    first claim on a box must carry across chunks, and score ties (scores are multiples of 1/8) keep the
    order of the ``update`` calls across them, as the reference's stable sort of everything does."""
    rng = np.random.default_rng(4)
    num_classes = 4
    predictions, targets = random_batch(rng, 1600, num_classes, max_detections=90)  # ~72k detections
    chunks = []  # detections matched per call: the chunks

    def spy(det_boxes, *args):
        chunks.append(len(det_boxes))
        return grouped_best_overlaps(det_boxes, *args)

    monkeypatch.setattr(voc, "grouped_best_overlaps", spy)
    evaluator = VOCEvaluator(num_classes, use_07_metric=False)
    for start in range(0, 1600, 100):
        evaluator.update(predictions[start : start + 100], targets[start : start + 100])
    result = evaluator.compute()
    total = sum(len(p["scores"]) for p in predictions)
    assert total > 2**16 and len(chunks) >= 2 and sum(chunks) == total, (total, chunks)
    expected = voc_class_aps(predictions, targets, num_classes, use_07_metric=False)
    for cls in range(1, num_classes):
        assert result["ap"][cls] == pytest.approx(expected[cls], abs=1e-12, nan_ok=True), cls


def test_compute_overrides_the_metric_for_one_call():
    rng = np.random.default_rng(3)
    predictions, targets = random_batch(rng, 12, 4)
    both = VOCEvaluator(4)  # 11-point by default
    both.update(predictions, targets)
    for use_07_metric in (False, True):
        alone = VOCEvaluator(4, use_07_metric=use_07_metric)
        alone.update(predictions, targets)
        assert both.compute(use_07_metric=use_07_metric)["ap"] == pytest.approx(alone.compute()["ap"], nan_ok=True)
    assert both.compute()["ap"] == pytest.approx(both.compute(use_07_metric=True)["ap"], nan_ok=True)
    assert both.compute(use_07_metric=False)["ap"] != pytest.approx(both.compute()["ap"], nan_ok=True)
