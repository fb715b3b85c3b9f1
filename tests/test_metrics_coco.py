"""COCOEvaluator: in-memory pycocotools evaluation on tiny cases."""

import pytest
import torch

pytest.importorskip("pycocotools")

from ssd_zoo.metrics.coco import STAT_NAMES, COCOEvaluator  # noqa: E402


def pred(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores), "labels": torch.tensor(labels)}


def gt(boxes, labels, **extra):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels), **extra}


SMALL, LARGE = [10, 10, 30, 30], [0, 0, 200, 150]  # areas 400 (< 32^2) and 30000 (> 96^2)


def test_perfect_detections():
    evaluator = COCOEvaluator(3)
    evaluator.update([pred([SMALL, LARGE], [0.9, 0.8], [1, 2])], [gt([SMALL, LARGE], [1, 2])])
    evaluator.update([pred([LARGE], [0.7], [2])], [gt([LARGE], [2])])
    stats = evaluator.compute()
    assert set(stats) == set(STAT_NAMES)
    for name in ("map", "map_50", "map_75", "map_small", "map_large", "mar_1", "mar_100"):
        assert stats[name] == pytest.approx(1.0), name
    assert stats["map_medium"] == -1.0  # no medium object: pycocotools' "undefined"


def test_half_found_and_shifted_box():
    evaluator = COCOEvaluator(2)
    # Box 2 detected with IoU 0.58 (a match at thresholds 0.50 and 0.55 of the ten), box 1
    # missed, plus a low-scoring false positive. COCO interpolates precision at 101 recall points:
    # precision 1 up to recall 0.5 covers 51 of them.
    shifted = [0, 0, 200, 87]  # IoU with LARGE = 17400 / 30000 = 0.58
    evaluator.update(
        [pred([shifted, [300, 300, 320, 320]], [0.9, 0.1], [1, 1])],
        [gt([SMALL, LARGE], [1, 1])],
    )
    stats = evaluator.compute()
    assert stats["map_50"] == pytest.approx(51 / 101)
    assert stats["map_75"] == pytest.approx(0.0)
    assert stats["map"] == pytest.approx(51 / 101 * 2 / 10)
    assert stats["mar_100"] == pytest.approx(0.5 * 2 / 10)


def test_no_detections_at_all_is_valid():
    evaluator = COCOEvaluator(3)
    evaluator.update([pred([], [], []), pred([], [], [])], [gt([SMALL], [1]), gt([], [])])
    stats = evaluator.compute()
    assert stats["map"] == 0.0 and stats["mar_100"] == 0.0


def test_crowd_and_area_from_targets():
    evaluator = COCOEvaluator(2)
    # A detection on a crowd region is ignored rather than a false positive.
    target = gt([LARGE, SMALL], [1, 1], iscrowd=torch.tensor([0, 1]), area=torch.tensor([3e4, 400.0]))
    evaluator.update([pred([LARGE, SMALL], [0.5, 0.9], [1, 1])], [target])
    assert evaluator.compute()["map"] == pytest.approx(1.0)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="expected as many predictions as targets"):
        COCOEvaluator(2).update([pred([], [], [])], [])
