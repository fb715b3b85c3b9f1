"""One training step (forward, loss, backward, SGD step), batch 8: ssd_zoo vs torchvision, same weights and targets.

    python -m benchmarks.training [--device cuda] [--repeat 2] [--quick] [--json rows.jsonl]

ssd_zoo in fp32 and under autocast (bf16 on CPU; bf16 and fp16 with a GradScaler on CUDA) against
torchvision's fp32 step. Before timing, the losses of both models on the same batch are compared.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from benchmarks.harness import emit, interleaved, ms, paired_models, parse_args, ratio, voc_sized_images

TARGETS = {"fp32": ">= 1.2x", "bf16": ">= 2.5x", "fp16": ""}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    dtype = DTYPES[precision]
    scaler = torch.amp.GradScaler(device.split(":")[0]) if precision == "fp16" else None

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(device.split(":")[0], dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast:
            loss = sum(model(images, targets).values())
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return step


def losses_agree(tv: torch.nn.Module, ours: torch.nn.Module, images: list, targets: list) -> str:
    """Compare both models' losses on one batch (random-sampling-free, so they must match to 1e-5 rel)."""
    expected, found = tv(images, targets), ours(images, targets)
    worst = max(abs(found[k].item() / expected[k].item() - 1) for k in ("bbox_regression", "classification"))
    return f"losses {'same' if worst <= 1e-5 else 'DIFFER'} (rel. diff {worst:.1e})"


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=2, warmup=1)  # a batch-8 step takes seconds on a CPU
    device = args.device
    tv, ours = (m.to(device).train() for m in paired_models())
    images = voc_sized_images(2 if args.quick else 8, device)
    targets = voc_like_targets(images)
    agree = losses_agree(tv, ours, images, targets)
    precisions = ["fp32", "bf16"] + (["fp16"] if device.startswith("cuda") else [])
    candidates = {"torchvision fp32": stepper(tv, images, targets, "fp32", device)}
    for precision in precisions:
        candidates[f"ssd_zoo {precision}"] = stepper(ours, images, targets, precision, device)
    times = interleaved(candidates, repeat=args.repeat, warmup=args.warmup, device=device)
    base = times["torchvision fp32"]
    rows = [{"benchmark": f"training step ({device})", "case": f"batch {len(images)}, {precision}",
             "ssd_zoo": ms(times[f"ssd_zoo {precision}"]), "alternative": f"torchvision fp32: {ms(base)}",
             "speed-up": ratio(base, times[f"ssd_zoo {precision}"]), "target": TARGETS[precision],
             "outputs": agree if precision == "fp32" else ""} for precision in precisions]
    emit(rows, args.json)


if __name__ == "__main__":
    main()
