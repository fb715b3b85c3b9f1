"""Long runs don't grow: inference over many batches and the evaluators over many images keep memory flat.

Two measures, each after a warm-up (allocator pools, lazily built caches): the process's resident memory (RSS,
which sees torch's own allocations) and tracemalloc's count of Python and numpy allocations (numpy reports its
buffers to tracemalloc), which sees a leak of a few bytes an image. The bounds are generous against the noise
of the allocators and far below what a leak of one tensor or array per batch would add over the run.
"""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import torch
from helpers import tiny_model

from ssd_zoo.metrics import COCOEvaluator, VOCEvaluator

MB = 1 << 20


def rss() -> int:
    """Resident memory of this process in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_inference_over_many_batches_stays_flat() -> None:
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = tiny_model().eval()
    images = [torch.rand(3, 48 + 8 * (i % 3), 64) for i in range(4)]  # sizes vary, as real pictures do

    def batches(count: int) -> None:
        with torch.inference_mode():
            for _ in range(count):
                detections = model(images)
                assert len(detections) == 4

    try:
        batches(20)  # warm-up
        gc.collect()
        tracemalloc.start()
        before_rss, before_py = rss(), tracemalloc.get_traced_memory()[0]
        batches(200)
        gc.collect()
        grown_rss, grown_py = rss() - before_rss, tracemalloc.get_traced_memory()[0] - before_py
    finally:
        tracemalloc.stop()
        torch.set_num_threads(threads)
    # One leaked [4, A, C] score tensor a batch (A = 1,000-odd boxes here) would be ~10 MB over 200 batches.
    assert grown_rss < 8 * MB, f"RSS grew {grown_rss / MB:.1f} MB over 200 batches"
    assert grown_py < 256 * 1024, f"Python/numpy allocations grew {grown_py / 1024:.0f} KiB over 200 batches"


def fake_batch(rng: np.random.Generator, images: int = 8, per_image: int = 20) -> tuple[list[dict], list[dict]]:
    def boxes(n: int) -> torch.Tensor:
        xy = rng.uniform(0, 200, (n, 2))
        return torch.from_numpy(np.concatenate([xy, xy + rng.uniform(5, 80, (n, 2))], 1).astype(np.float32))

    predictions = [{"boxes": boxes(per_image), "scores": torch.from_numpy(rng.random(per_image).astype(np.float32)),
                    "labels": torch.from_numpy(rng.integers(1, 4, per_image))} for _ in range(images)]
    targets = [{"boxes": boxes(3), "labels": torch.from_numpy(rng.integers(1, 4, 3)),
                "difficult": torch.zeros(3, dtype=torch.bool)} for _ in range(images)]
    return predictions, targets


def test_evaluators_over_many_images_stay_flat() -> None:
    """What an evaluator keeps grows with the detections it is given (it must, to sort them), by the same few
    dozen bytes each, batch after batch; after ``compute`` and ``reset`` it is back where it started, evaluation
    after evaluation, and each evaluation keeps what the one before kept.

    Growth is measured batch by batch (from the first batch's end to the last's), so the evaluator's fixed
    costs do not hide a per-detection leak: 64 images (16 for COCO, whose ``compute`` under tracemalloc costs
    milliseconds a detection) show what a whole-run total needed a thousand for."""
    rng = np.random.default_rng(0)
    for evaluator, per_detection, batches in ((VOCEvaluator(4), 64, [fake_batch(rng) for _ in range(8)]),
                                              (COCOEvaluator(4), 400, [fake_batch(rng, 4) for _ in range(4)])):
        name = type(evaluator).__name__
        later = sum(len(p["labels"]) for preds, _ in batches[1:] for p in preds)  # detections after the first batch
        for predictions, targets in batches:  # warm-up: lazy imports and caches, untraced
            evaluator.update(predictions, targets)
        evaluator.compute()
        held, kept = [], []  # traced bytes after each reset; (first batch, later batches) of each evaluation
        gc.collect()
        gc.freeze()  # what exists now is not garbage: gc.collect() below then walks only what the evaluations made
        tracemalloc.start()
        try:
            for _ in range(3):  # the dataset evaluated three times more
                evaluator.reset()
                gc.collect()
                held.append(tracemalloc.get_traced_memory()[0])
                after = []
                for predictions, targets in batches:
                    evaluator.update(predictions, targets)
                    after.append(tracemalloc.get_traced_memory()[0])
                kept.append((after[0] - held[-1], after[-1] - after[0]))
                evaluator.compute()
        finally:
            tracemalloc.stop()
            gc.unfreeze()
        assert kept[0][1] < per_detection * later, f"{name}: {kept[0][1] / later:.0f} bytes a detection"
        assert sum(kept[2]) < sum(kept[0]) * 1.1 + 2048, f"{name}: kept {kept} bytes in three evaluations"
        # Held after reset: the first traced evaluation adds a kilobyte or two (this test's lists, numpy's and
        # pycocotools' small caches), later ones a few hundred bytes. A leak adds what it keeps: a score array
        # an image 12 KiB (VOC) or 3 KiB (COCO), a whole evaluation (a reset that forgets a list, a compute that
        # stores its COCOeval) 40 KiB to 47 KiB.
        assert held[2] - held[1] < 2560, f"{name}: {held} bytes held after each reset, kept {kept}"
