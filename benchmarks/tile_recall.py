"""Sliced inference on a large image of many small objects: recall of the demo's model with and without tiles.

    python -m benchmarks.tile_recall [--checkpoint runs/demo/best.pth] [--picture docs/tiles_example.png]

The image: 4000 x 3000 px, tiled with shapes images drawn by the demo's own generator
(``ssd_zoo.data.shapes.render_shapes_image``, 128-160 px each, their textured backgrounds and 1-6 objects of
8-80 px), so every object is at the scale the demo trained on, and 25-30x smaller than that once the whole
image is resized to the model's 128 px input. The model is rebuilt from the checkpoint file alone (the record's
builder, as ``ssd-zoo detect`` does); a checkpoint saved before the resize option is letterboxed as the demo
trained it (pad_to_square). Recall: the share of the non-difficult objects that a detection of the same class
scoring >= 0.5 overlaps with IoU >= 0.5; precision: the share of those detections that match an object.
Passes, side by side in one process: the whole image; tiles (``ssd_zoo.detect.predict.tiles``, ``ssd-zoo detect --tile
160``) of 160 px with overlap 0.25, plus the whole-image pass.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from benchmarks.harness import ROOT, describe, machine
from ssd_zoo.detect import predict
from ssd_zoo.data.shapes import SHAPES_CLASSES, render_shapes_image
from ssd_zoo.registry import build
from ssd_zoo.train.model import PAD_FILL  # the demo's padding colour
from ssd_zoo.weights.resolve import read_weights



def large_image(height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(image [3, H, W] in 0..1, boxes [N, 4] xyxy, labels [N] 1-based)`` of the non-difficult objects."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    boxes, labels = [], []
    y, k = 0, 0
    while y < height:
        x, row = 0, 0
        while x < width:
            pixels, objects = render_shapes_image(np.random.default_rng([seed, k]), (128, 160))
            h, w = min(pixels.shape[0], height - y), min(pixels.shape[1], width - x)
            canvas[y:y + h, x:x + w] = pixels[:h, :w]
            for obj in objects:
                x1, y1, x2, y2 = obj["box"]
                if not obj["difficult"] and x2 < w and y2 < h:  # whole on the canvas
                    boxes.append([x + x1, y + y1, x + x2 + 1, y + y2 + 1])
                    labels.append(SHAPES_CLASSES.index(obj["name"]) + 1)
            x, row, k = x + w, max(row, h), k + 1
        y += row
    image = torch.from_numpy(canvas).permute(2, 0, 1).float().div(255)
    return image, torch.tensor(boxes, dtype=torch.float32), torch.tensor(labels)


def load(path: Path) -> torch.nn.Module:
    """The model the checkpoint records (its builder), letterboxed as the demo trained when it predates the option."""
    checkpoint = read_weights(path)
    record = checkpoint.record or {}
    saved = record.get("builder") or {}
    extra = {} if "resize" in record else {"resize": "letterbox", "pad_fill": PAD_FILL}
    return build(saved["name"], weights=checkpoint, **{**saved["kwargs"], **extra, "score_thresh": 0.5}).eval()


def score(det: dict[str, torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(recall, precision) at IoU 0.5, same class, each object matched once (best-scoring detections first)."""
    if not len(det["boxes"]):
        return 0.0, 0.0
    iou = box_iou(det["boxes"], boxes) * (det["labels"][:, None] == labels[None, :])
    taken = torch.zeros(len(boxes), dtype=torch.bool)
    hits = 0
    for i in det["scores"].argsort(descending=True).tolist():
        candidates = (iou[i] >= 0.5) & ~taken
        if candidates.any():
            taken[int((iou[i] * candidates).argmax())] = True
            hits += 1
    return float(taken.float().mean()), hits / len(det["boxes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs/demo/best.pth")
    parser.add_argument("--size", type=int, nargs=2, default=(3000, 4000), metavar=("H", "W"))
    parser.add_argument("--picture", type=Path, help="also save a 480 x 360 crop with the tiled detections drawn")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load(args.checkpoint)
    image, boxes, labels = large_image(*args.size)
    print(f"{args.checkpoint}: {image.shape[2]} x {image.shape[1]} px image, {len(boxes)} objects "
          f"(median side {float((boxes[:, 2:] - boxes[:, :2]).amax(1).median()):.0f} px); {describe(machine())}")
    passes = {"whole image (resized to the input)": lambda: predict.images(model, [image])[0]}
    passes["tiles 160 px, overlap 0.25, + whole image"] = lambda: predict.tiles(model, image, 160, 0.25, batch_size=32)
    print(f"| pass | recall | precision | detections | seconds |\n|---|---|---|---|---|")
    kept = None
    for name, run in passes.items():
        start = time.perf_counter()
        det = run()
        seconds = time.perf_counter() - start
        recall, precision = score(det, boxes, labels)
        print(f"| {name} | {recall:.3f} | {precision:.3f} | {len(det['boxes'])} | {seconds:.1f} |")
        if "tiles" in name:
            kept = det
    if args.picture and kept is not None:
        from PIL import Image

        from ssd_zoo.detect.draw import draw_detections

        x0, y0, x1, y1 = 1200, 900, 1680, 1260
        inside = (kept["boxes"][:, 0] >= x0) & (kept["boxes"][:, 1] >= y0) & (kept["boxes"][:, 2] <= x1) & \
                 (kept["boxes"][:, 3] <= y1)
        crop = {k: v[inside] for k, v in kept.items()}
        crop["boxes"] = crop["boxes"] - torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
        names = ["__background__", *SHAPES_CLASSES]
        drawn = draw_detections(image[:, y0:y1, x0:x1], crop, names, min_side=360)
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(args.picture, optimize=True)
        print(f"wrote {args.picture}")


if __name__ == "__main__":
    main()
