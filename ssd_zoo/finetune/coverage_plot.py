"""The coverage as a picture: the ground-truth boxes' width/height scatter with the default boxes over it.

Log-log axes in pixels of the network input. Each ground-truth box is a dot, green where its best default box
reaches the matching IoU, red where none does; each default-box shape is a hollow square in its map's colour;
the shaded area holds the shapes a default box of the same centre would match (IoU of centred boxes: what
the shapes alone allow, before the grid's offsets). Drawn with PIL (torchvision's own dependency).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from ssd_zoo.files import write_atomic
from ssd_zoo.ops.default_boxes import box_shapes
from ssd_zoo.finetune.anchor_coverage import Coverage

PANEL = 420  # plot square, pixels
MARGIN = 48
LEVEL_COLOURS = ((31, 119, 180), (255, 127, 14), (148, 103, 189), (140, 86, 75), (227, 119, 194), (23, 190, 207),
                 (188, 189, 34), (127, 127, 127))


def _panel(report: Coverage, widths: torch.Tensor, heights: torch.Tensor, title: str, span: tuple[float, float]) -> Image.Image:
    spec, size = report.spec, report.spec.input_size
    low, high = (math.log(v) for v in span)
    image = Image.new("RGB", (PANEL + 2 * MARGIN, PANEL + 2 * MARGIN), "white")
    draw = ImageDraw.Draw(image)

    def to_pixel(w: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = MARGIN + (w.clamp(min=1e-3).log() - low) / (high - low) * PANEL
        y = MARGIN + PANEL - (h.clamp(min=1e-3).log() - low) / (high - low) * PANEL
        return x, y

    # shaded: (w, h) that a centred default box of some shape matches at the threshold
    shapes = (torch.cat(box_shapes(spec)).clamp(0, 1 if spec.clip != "none" else math.inf) * size)  # (S, 2)
    axis = torch.exp(low + (torch.arange(PANEL) + 0.5) / PANEL * (high - low))
    h_grid, w_grid = torch.meshgrid(axis.flip(0), axis, indexing="ij")  # image rows run top (large h) down
    inter = torch.minimum(w_grid[..., None], shapes[:, 0]) * torch.minimum(h_grid[..., None], shapes[:, 1])
    iou = inter / (w_grid[..., None] * h_grid[..., None] + shapes.prod(dim=1) - inter)
    zone = (iou.max(dim=-1).values >= report.iou_thresh).numpy()
    shade = Image.new("RGB", (PANEL, PANEL), (255, 255, 255))
    shade.paste((222, 235, 247), mask=Image.fromarray((zone * 255).astype("uint8")))
    image.paste(shade, (MARGIN, MARGIN))

    for tick in (2 ** n for n in range(0, 12)):  # axes: powers of two inside the span
        if span[0] <= tick <= span[1]:
            x, y = to_pixel(torch.tensor(float(tick)), torch.tensor(float(tick)))
            draw.line([(float(x), MARGIN + PANEL), (float(x), MARGIN + PANEL + 4)], fill="black")
            draw.text((float(x) - 6, MARGIN + PANEL + 6), str(tick), fill="black")
            draw.line([(MARGIN - 4, float(y)), (MARGIN, float(y))], fill="black")
            draw.text((4, float(y) - 6), str(tick), fill="black")
    draw.rectangle([MARGIN, MARGIN, MARGIN + PANEL, MARGIN + PANEL], outline="black")

    covered = report.best_iou >= report.iou_thresh
    order = covered.int().argsort(descending=True, stable=True)  # uncovered drawn last, on top
    for x, y, ok in zip(*(v.tolist() for v in to_pixel(widths[order], heights[order])), covered[order].tolist()):
        draw.point([(x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1)], fill=(40, 160, 40) if ok else (214, 39, 40))
    for k, wh in enumerate(box_shapes(spec)):
        colour = LEVEL_COLOURS[k % len(LEVEL_COLOURS)]
        wh = wh.clamp(0, 1 if spec.clip != "none" else math.inf) * size
        for x, y in zip(*(v.tolist() for v in to_pixel(wh[:, 0], wh[:, 1]))):
            draw.rectangle([x - 4, y - 4, x + 4, y + 4], outline=colour, width=2)
        draw.text((MARGIN + 6, MARGIN + 6 + 12 * k), f"map {k} (step {spec.steps[k]:g})", fill=colour)
    draw.text((MARGIN, 8), title, fill="black")
    draw.text((MARGIN, 22), f"covered {report.covered:.1%} at IoU {report.iou_thresh:g}; {len(widths)} boxes",
              fill="black")
    draw.text((MARGIN + PANEL // 2 - 60, MARGIN + PANEL + 26), "width, px of the input (log)", fill="black")
    return image


def draw_coverage(path: str | Path, reports: list[Coverage], boxes: torch.Tensor, titles: list[str] | None = None) -> Path:
    """Write a PNG at ``path`` (atomically) with one panel per report, side by side, of ``boxes`` ``[N, 4]``
    xyxy pixels of the input (the boxes the reports were made of). Returns ``path``."""
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"--png: expected a .png file name, found {Path(path).name!r}")
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0.5)
    shapes = torch.cat([torch.cat(box_shapes(r.spec)) * r.spec.input_size for r in reports]).clamp(min=0.5)
    everything = torch.cat([wh.flatten(), shapes.flatten()])
    span = (2 ** math.floor(math.log2(float(everything.min()))), 2 ** math.ceil(math.log2(float(everything.max()))))
    titles = titles or [r.spec.describe() for r in reports]
    panels = [_panel(r, wh[:, 0], wh[:, 1], t, span) for r, t in zip(reports, titles)]
    sheet = Image.new("RGB", (sum(p.width for p in panels), panels[0].height), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel, (i * panel.width, 0))
    return write_atomic(path, lambda f: sheet.save(f, format="PNG"))
