"""Data: SSD augmentation throughput, images/s in one worker (one thread, as a DataLoader worker runs).

    python -m benchmarks.data [--repeat 3] [--quick] [--json rows.jsonl]

ssd_zoo's ``SSDAugmentation`` on float images (what the datasets give) against the same recipe as
torchvision's detection reference composes it for SSD, on uint8 images (its dataset format). Both are
checked to return boxes inside their image with positive sides.
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from benchmarks.harness import emit, interleaved, parse_args, voc_sized_images
from ssd_zoo.data.augment import SSDAugmentation


def torchvision_reference() -> v2.Compose:
    """torchvision's ``references/detection`` "ssd" augmentation (presets.py), for uint8 images."""
    return v2.Compose([
        v2.RandomPhotometricDistort(p=1.0),
        v2.RandomZoomOut(fill={tv_tensors.Image: (123, 117, 104), "others": 0}),
        v2.RandomIoUCrop(),
        v2.RandomHorizontalFlip(p=0.5),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(),
    ])


def valid(image: torch.Tensor, boxes: torch.Tensor) -> bool:
    height, width = image.shape[-2:]
    return bool(((boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes[:, 2] <= width).all()
                 and (boxes[:, 3] <= height).all()).item()) if len(boxes) else True


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=3, warmup=1)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n = 20 if args.quick else 100
    images = voc_sized_images(n)
    boxes = torch.tensor([[50.0, 60.0, 300.0, 340.0], [200.0, 30.0, 480.0, 200.0]])
    targets = [{"boxes": boxes.clone(), "labels": torch.tensor([3, 7])} for _ in images]
    ours, theirs = SSDAugmentation(), torchvision_reference()
    uint8 = [tv_tensors.Image((im * 255).to(torch.uint8)) for im in images]
    ok = {"ssd_zoo": True, "torchvision": True}

    def run_ours() -> None:
        for image, target in zip(images, targets):
            out, t = ours(image, target)
            ok["ssd_zoo"] &= valid(out, t["boxes"])

    def run_theirs() -> None:
        for image, target in zip(uint8, targets):
            canvas = (image.shape[-2], image.shape[-1])
            out, t = theirs(image, {"boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=canvas),
                                    "labels": target["labels"]})
            ok["torchvision"] &= valid(out, t["boxes"])

    times = interleaved({"ssd_zoo": run_ours, "torchvision": run_theirs}, repeat=args.repeat, warmup=args.warmup)
    ours_rate, theirs_rate = n / times["ssd_zoo"], n / times["torchvision"]
    emit([{"benchmark": "data (cpu, 1 thread)", "case": "SSD augmentation, 500x375 photos, 2 boxes",
           "ssd_zoo": f"{ours_rate:.0f} images/s (float32)",
           "alternative": f"torchvision reference (uint8): {theirs_rate:.0f} images/s",
           "speed-up": f"{ours_rate / theirs_rate:.2f}x", "target": "",
           "outputs": "valid boxes" if all(ok.values()) else f"INVALID boxes: {ok}"}], args.json)


if __name__ == "__main__":
    main()
