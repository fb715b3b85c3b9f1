"""One training step (forward, loss, backward, SGD step), batch 8: ssd_zoo vs torchvision, same weights and targets.

    python -m benchmarks.training [--device cuda] [--repeat 2] [--warmup 1] [--quick] [--json rows.jsonl]

Both models step in every precision: fp32 and bf16 autocast (fp16 autocast with a GradScaler too on CUDA, where
fp32 runs without TF32). Each precision of ssd_zoo is compared with torchvision in the same precision; bf16 and
fp16 also, in rows of their own, with torchvision fp32 (the baseline of the bf16 target). Before timing, in the
settings of the timed steps, both models' losses on the batch are compared: to 1e-5 relative in fp32 (the
loss has no random sampling), to 2e-2 under autocast, where rounding differs with the memory layout.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from benchmarks.harness import autocast, emit, interleaved, ms, parse_args, precisions, ratio, voc_sized_images
from benchmarks.reference import paired_models

SAME_PRECISION_TARGETS = {"fp32": ">= 1.2x", "bf16": "", "fp16": ""}
FP32_BASELINE_TARGETS = {"bf16": ">= 2.5x", "fp16": ""}
TOLERANCE = {"fp32": 1e-5, "bf16": 2e-2, "fp16": 2e-2}  # relative, per loss term


def voc_like_targets(images: list[torch.Tensor], num_classes: int = 21, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """1 to 4 random boxes per image (xyxy pixels, at least 20 px a side), labels in ``[1, num_classes)``."""
    generator = torch.Generator().manual_seed(seed)
    targets = []
    for image in images:
        height, width = image.shape[-2:]
        n = int(torch.randint(1, 5, (1,), generator=generator))
        x1y1 = torch.rand(n, 2, generator=generator) * torch.tensor([width - 40.0, height - 40.0])
        wh = 20 + torch.rand(n, 2, generator=generator) * (torch.tensor([width, height]) - x1y1 - 20)
        targets.append({"boxes": torch.cat([x1y1, x1y1 + wh], 1).to(image.device),
                        "labels": torch.randint(1, num_classes, (n,), generator=generator).to(image.device)})
    return targets


def stepper(model: torch.nn.Module, images: list, targets: list, precision: str, device: str) -> Callable[[], None]:
    """A no-argument SGD step of ``model`` on ``(images, targets)`` in ``precision``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    scaler = torch.amp.GradScaler(device.split(":")[0]) if precision == "fp16" else None

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision, device):
            loss = sum(model(images, targets).values())
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return step


def losses(model: torch.nn.Module, images: list, targets: list, precision: str, device: str) -> dict[str, float]:
    with torch.no_grad(), autocast(precision, device):
        return {key: value.item() for key, value in model(images, targets).items()}


def losses_agree(expected: dict[str, float], found: dict[str, float], baseline: str, precision: str) -> str:
    """Both loss terms within ``TOLERANCE[precision]`` (relative) of the ``baseline`` run's."""
    worst = max(abs(found[k] / expected[k] - 1) for k in ("bbox_regression", "classification"))
    verdict = "same" if worst <= TOLERANCE[precision] else "DIFFER"
    return f"losses {verdict} as torchvision {baseline}'s (rel. diff {worst:.1e}, tolerance {TOLERANCE[precision]:g})"


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=2, warmup=1)  # a batch-8 step takes seconds on a CPU
    device = args.device
    tv, ours = (m.to(device).train() for m in paired_models())
    images = voc_sized_images(2 if args.quick else 8, device)
    targets = voc_like_targets(images)
    measured = {(side, precision): losses(model, images, targets, precision, device)
                for precision in precisions(device) for side, model in (("torchvision", tv), ("ssd_zoo", ours))}
    candidates = {}
    for precision in precisions(device):
        candidates[f"torchvision {precision}"] = stepper(tv, images, targets, precision, device)
        candidates[f"ssd_zoo {precision}"] = stepper(ours, images, targets, precision, device)
    times = interleaved(candidates, repeat=args.repeat, warmup=args.warmup, device=device)
    rows = []
    for precision in precisions(device):
        for baseline in [precision] + (["fp32"] if precision != "fp32" else []):
            target = SAME_PRECISION_TARGETS[precision] if baseline == precision else FP32_BASELINE_TARGETS[precision]
            ours_s, theirs_s = times[f"ssd_zoo {precision}"], times[f"torchvision {baseline}"]
            rows.append({"benchmark": f"training step ({device})",
                         "case": f"batch {len(images)}, {precision} vs torchvision {baseline}",
                         "ssd_zoo": ms(ours_s), "alternative": f"torchvision {baseline}: {ms(theirs_s)}",
                         "speed-up": ratio(theirs_s, ours_s), "target": target,
                         "outputs": losses_agree(measured["torchvision", baseline], measured["ssd_zoo", precision],
                                                 baseline, precision)})
    emit(rows, args.json)


if __name__ == "__main__":
    main()
