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

import ssd_zoo
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
    model = ssd_zoo.build("ssd", num_classes=3, backbone="resnet18", input_size=64, anchors="coco",
                          extra_channels=[16, 16, 16], timm_kwargs={"channels": [8, 8, 16, 16], "stem_width": 8})
    model.eval()
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
    """What an evaluator keeps grows with the detections it is given (it must, to sort them), at a few dozen
    bytes each; evaluating again after ``reset`` holds no more than the first evaluation did."""
    rng = np.random.default_rng(0)
    batches = [fake_batch(rng) for _ in range(100)]  # 800 images, 16,000 detections
    detections = sum(len(p["labels"]) for preds, _ in batches for p in preds)
    for evaluator, per_detection in ((VOCEvaluator(4), 64), (COCOEvaluator(4), 400)):
        kept = []
        tracemalloc.start()
        try:
            for _ in range(3):  # a dataset evaluated three times over
                evaluator.reset()
                gc.collect()
                start = tracemalloc.get_traced_memory()[0]
                for predictions, targets in batches:
                    evaluator.update(predictions, targets)
                kept.append(tracemalloc.get_traced_memory()[0] - start)
                evaluator.compute()
        finally:
            tracemalloc.stop()
        name = type(evaluator).__name__
        assert kept[0] < per_detection * detections, f"{name}: {kept[0] / detections:.0f} bytes a detection"
        assert kept[2] < kept[0] * 1.1 + 64 * 1024, f"{name}: kept {kept} bytes in three evaluations"
