"""Data: SSD augmentation throughput, images/s in one worker (one thread, as a DataLoader worker runs).

    python -m benchmarks.data [--repeat 3] [--warmup 1] [--quick] [--json rows.jsonl]

ssd_zoo's ``SSDAugmentation`` against torchvision's detection reference recipe for SSD (``references/detection/
presets.py``, "ssd": ``RandomPhotometricDistort()``, ``RandomZoomOut``, ``RandomIoUCrop``, ``RandomHorizontalFlip``,
with its defaults, p=0.5 each) on the same float32 images, with the same fill colour (the preset's
(123, 117, 104) / 255) and the same random draws: torch's generator is seeded alike before each pass. The same
work, then: both must return the same images and boxes, which the row checks.
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from benchmarks.harness import emit, interleaved, parse_args, voc_sized_images
from ssd_zoo.data.augment import SSDAugmentation

PRESET_FILL = (123 / 255, 117 / 255, 104 / 255)  # the preset's uint8 fill, for float images


def torchvision_reference() -> v2.Compose:
    """torchvision's ``references/detection`` "ssd" augmentation (presets.py), for float images in [0, 1]."""
    return v2.Compose([
        v2.RandomPhotometricDistort(),
        v2.RandomZoomOut(fill={tv_tensors.Image: PRESET_FILL, "others": 0}),
        v2.RandomIoUCrop(),
        v2.RandomHorizontalFlip(p=0.5),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(),
    ])


def same_outputs(ours: list[tuple], theirs: list[tuple]) -> str:
    """"same" when every image and its boxes match (images to 1e-6: ssd_zoo clamps to [0, 1])."""
    for i, ((image, boxes), (expected_image, expected_boxes)) in enumerate(zip(ours, theirs)):
        if image.shape != expected_image.shape or not torch.equal(boxes, expected_boxes):
            return f"DIFFER (image {i}: {'size' if image.shape != expected_image.shape else 'boxes'})"
        if not torch.allclose(image, expected_image.clamp(0, 1), atol=1e-6):
            return f"DIFFER (image {i}: pixels)"
    return f"same images and boxes ({len(ours)} images, same seed)"


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=3, warmup=1)
    torch.set_num_threads(1)
    n = 20 if args.quick else 100
    images = voc_sized_images(n)
    boxes = torch.tensor([[50.0, 60.0, 300.0, 340.0], [200.0, 30.0, 480.0, 200.0]])
    targets = [{"boxes": boxes.clone(), "labels": torch.tensor([3, 7])} for _ in images]
    ours, theirs = SSDAugmentation(fill=PRESET_FILL), torchvision_reference()
    outputs: dict[str, list[tuple]] = {}

    def run_ours() -> None:
        torch.random.default_generator.manual_seed(0)
        outputs["ssd_zoo"] = [(image, t["boxes"]) for image, t in (ours(im, tg) for im, tg in zip(images, targets))]

    def run_theirs() -> None:
        torch.random.default_generator.manual_seed(0)
        results = []
        for image, target in zip(images, targets):
            canvas = (image.shape[-2], image.shape[-1])
            out, t = theirs(tv_tensors.Image(image), {
                "boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=canvas),
                "labels": target["labels"]})
            results.append((out.as_subclass(torch.Tensor), t["boxes"].as_subclass(torch.Tensor)))
        outputs["torchvision"] = results

    times = interleaved({"ssd_zoo": run_ours, "torchvision": run_theirs}, repeat=args.repeat, warmup=args.warmup)
    ours_rate, theirs_rate = n / times["ssd_zoo"], n / times["torchvision"]
    emit([{"benchmark": "data (cpu, 1 thread)", "case": "SSD augmentation, 500x375 float32 photos, 2 boxes",
           "ssd_zoo": f"{ours_rate:.0f} images/s", "alternative": f"torchvision reference: {theirs_rate:.0f} images/s",
           "speed-up": f"{ours_rate / theirs_rate:.2f}x", "target": "",
           "outputs": same_outputs(outputs["ssd_zoo"], outputs["torchvision"])}], args.json)


if __name__ == "__main__":
    main()
