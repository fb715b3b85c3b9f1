"""Evaluation: ``VOCEvaluator`` vs the per-detection VOC loop; ``COCOEvaluator`` vs torchmetrics' mAP.

    python -m benchmarks.evaluation [--repeat 3] [--warmup 1] [--quick] [--json rows.jsonl]

The VOC workload is VOC07-test-sized: 4952 images, 20 classes, 100 detections each, about 3 objects per
image (a fifth of them difficult); detections are jittered copies of the objects plus clutter. The loop is
:func:`benchmarks.reference.voc_class_aps`, the devkit's algorithm as py-faster-rcnn's ``voc_eval`` describes
it (detections split by class once, then per class one detection at a time), the same reference the tests
use. Both compute the VOC07 11-point AP with pixel-inclusive IoU > 0.5; every class's AP is compared.
The COCO row needs torchmetrics (``pip install -e '.[bench]'``) and is skipped without it. Each candidate
runs once untimed (``--warmup``) before the timed rounds.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from benchmarks.harness import emit, interleaved, ms, parse_args, ratio
from benchmarks.reference import voc_class_aps
from ssd_zoo.metrics import COCOEvaluator, VOCEvaluator


def workload(num_images: int, num_classes: int = 21, detections: int = 100, seed: int = 0) -> tuple[list, list]:
    """Per image, predictions ``{boxes, scores, labels}`` and targets ``{boxes, labels, difficult}`` (xyxy px)."""
    rng = np.random.default_rng(seed)
    predictions, targets = [], []
    for _ in range(num_images):
        g = int(rng.integers(1, 6))
        xy = rng.uniform(0, 400, (g, 2))
        gt = np.concatenate([xy, xy + rng.uniform(20, 100, (g, 2))], 1)
        labels = rng.integers(1, num_classes, g)
        copies = rng.integers(0, g, detections // 2)  # half the detections near an object, half clutter
        near = gt[copies] + rng.normal(0, 8, (len(copies), 4))
        near_labels = np.where(rng.random(len(copies)) < 0.8, labels[copies], rng.integers(1, num_classes, len(copies)))
        xy = rng.uniform(0, 400, (detections - len(copies), 2))
        clutter = np.concatenate([xy, xy + rng.uniform(10, 100, xy.shape)], 1)
        boxes = np.concatenate([near, clutter])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        predictions.append({"boxes": torch.from_numpy(boxes).float(),
                            "scores": torch.from_numpy(rng.random(detections)).float(),
                            "labels": torch.from_numpy(np.concatenate([near_labels, rng.integers(1, num_classes, len(xy))]))})
        targets.append({"boxes": torch.from_numpy(gt).float(), "labels": torch.from_numpy(labels),
                        "difficult": torch.from_numpy(rng.random(g) < 0.2)})
    return predictions, targets


def evaluate(evaluator: VOCEvaluator | COCOEvaluator, predictions: list, targets: list, batch: int = 32) -> dict:
    evaluator.reset()
    for start in range(0, len(predictions), batch):
        evaluator.update(predictions[start:start + batch], targets[start:start + batch])
    return evaluator.compute()


def voc_row(args, num_images: int) -> dict[str, str]:  # noqa: ANN001
    predictions, targets = workload(num_images)
    results = {}
    candidates = {
        "ssd_zoo": lambda: results.__setitem__("ours", evaluate(VOCEvaluator(21), predictions, targets)),
        "loop": lambda: results.__setitem__("loop", voc_class_aps(predictions, targets, 21)),
    }
    times = interleaved(candidates, repeat=args.repeat, warmup=args.warmup)
    ours, loop = results["ours"], results["loop"]
    worst = max(abs(ours["ap"][c] - loop[c]) for c in loop)  # every class has ground truth here: no NaN
    loop_map = float(np.nanmean(list(loop.values())))
    same = worst < 1e-9 and not math.isnan(worst)
    return {"benchmark": "evaluation (cpu)", "case": f"VOCEvaluator, {num_images} images x 100 detections, 20 classes",
            "ssd_zoo": ms(times["ssd_zoo"]), "alternative": f"per-detection voc_eval loop: {ms(times['loop'])}",
            "speed-up": ratio(times["loop"], times["ssd_zoo"]), "target": ">= 50x",
            "outputs": f"20 class APs {'same' if same else 'DIFFER'} (max diff {worst:.1e}; mAP {ours['map']:.4f} vs "
                       f"{loop_map:.4f})"}


def coco_row(args, num_images: int) -> dict[str, str]:  # noqa: ANN001
    case = f"COCOEvaluator, {num_images} images x 100 detections, 20 classes"
    try:
        from torchmetrics.detection import MeanAveragePrecision
    except ImportError:
        return {"benchmark": "evaluation (cpu)", "case": case, "ssd_zoo": "-",
                "alternative": "skipped: torchmetrics not installed (pip install -e '.[bench]')"}
    predictions, targets = workload(num_images, seed=1)
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]  # COCO has no "difficult"
    results = {}

    def torchmetrics_map() -> None:
        metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
        for start in range(0, len(predictions), 32):
            metric.update(predictions[start:start + 32], targets[start:start + 32])
        results["theirs"] = metric.compute()

    candidates = {"ssd_zoo": lambda: results.__setitem__("ours", evaluate(COCOEvaluator(21), predictions, targets)),
                  "torchmetrics": torchmetrics_map}
    times = interleaved(candidates, repeat=args.repeat, warmup=args.warmup)
    ours, theirs = results["ours"], results["theirs"]
    worst = max(abs(ours[k] - float(theirs[k])) for k in ("map", "map_50", "map_75"))
    return {"benchmark": "evaluation (cpu)", "case": case, "ssd_zoo": ms(times["ssd_zoo"]),
            "alternative": f"torchmetrics MeanAveragePrecision: {ms(times['torchmetrics'])}",
            "speed-up": ratio(times["torchmetrics"], times["ssd_zoo"]), "target": "",
            "outputs": f"AP {'same' if worst < 1e-4 else 'DIFFER'} (map {ours['map']:.4f}, max diff {worst:.1e})"}


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=3, warmup=1)
    emit([voc_row(args, 300 if args.quick else 4952)], args.json)
    emit([coco_row(args, 100 if args.quick else 500)], args.json)


if __name__ == "__main__":
    main()
