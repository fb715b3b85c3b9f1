"""Post-processing's NMS: ssd_zoo's ``grouped_nms`` against torchvision's ``batched_nms``, on the same candidates.

    python -m benchmarks.nms [--device cuda] [--repeat 5] [--warmup 1] [--quick] [--json rows.jsonl]

The candidates are what ``ssd_zoo.ops.postprocess.select_detections`` hands to NMS: per image and class (a
group) up to ``topk_candidates`` boxes, laid out by group. They are synthetic here: each group's boxes are
jittered copies of 5 objects, clipped to a 300x300 input (so that NMS suppresses), scores uniform. Cases: 20
classes, at batch 1 and 8, with 400 candidates per group (what a random-weight SSD300 gives: every class scores
about 1/21 > 0.01) and with 50. Alternatives, each against ``grouped_nms`` (one ``nms`` per group, on a slice):

- ``batched_nms`` on the whole batch's candidates, groups as its ``idxs`` (on the CPU, above 1000 boxes, it
  loops over the groups and scans all boxes for each);
- ``batched_nms`` per image with the labels as ``idxs``, as torchvision's SSD post-processing calls it;
- one ``nms`` call with coordinate offsets per group (``batched_nms``'s strategy for few boxes), whose cost
  grows with the square of the candidates.

The outputs check: the same set of kept indices.
"""
from __future__ import annotations

import argparse

import torch
from torch import Tensor
from torchvision.ops import batched_nms, nms

from benchmarks.harness import emit, interleaved, ms, parse_args, ratio
from ssd_zoo.ops.postprocess import grouped_nms

IOU_THRESH, NUM_CLASSES, OBJECTS = 0.45, 20, 5


def candidates(batch: int, per_group: int, device: str, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``(boxes [N, 4] xyxy, scores [N], groups [N])``, N = batch * 20 * per_group, laid out by group."""
    generator = torch.Generator().manual_seed(seed)
    groups = batch * NUM_CLASSES
    centres = torch.rand(groups, OBJECTS, 2, generator=generator) * 300
    sizes = 20 + torch.rand(groups, OBJECTS, 2, generator=generator) * 130
    pick = torch.randint(0, OBJECTS, (groups, per_group), generator=generator)
    centre = torch.gather(centres, 1, pick[..., None].expand(-1, -1, 2))
    size = torch.gather(sizes, 1, pick[..., None].expand(-1, -1, 2))
    centre = centre + torch.randn(centre.shape, generator=generator) * 0.1 * size
    size = size * (1 + 0.1 * torch.randn(size.shape, generator=generator)).clamp(min=0.5)
    boxes = torch.cat([centre - size / 2, centre + size / 2], -1).reshape(-1, 4).clamp(0, 300)  # clipped, as there
    scores = torch.rand(groups * per_group, generator=generator)
    group_ids = torch.arange(groups).repeat_interleave(per_group)
    return boxes.to(device), scores.to(device), group_ids.to(device)


def per_image_batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, batch: int) -> Tensor:
    """torchvision's SSD: one ``batched_nms`` per image, the class as ``idxs``; indices into the whole batch."""
    kept, start = [], 0
    for count in torch.bincount(groups // NUM_CLASSES, minlength=batch).tolist():
        part = slice(start, start + count)
        kept.append(start + batched_nms(boxes[part], scores[part], groups[part] % NUM_CLASSES, IOU_THRESH))
        start += count
    return torch.cat(kept)


def coordinate_offsets(boxes: Tensor, scores: Tensor, groups: Tensor) -> Tensor:
    """One ``nms`` call, each group shifted past the previous ones so that groups never overlap."""
    offsets = groups.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, IOU_THRESH)


def rows_for(args: argparse.Namespace, batch: int, per_group: int) -> list[dict[str, str]]:
    boxes, scores, groups = candidates(batch, per_group, args.device)
    kept = {}
    contenders = {
        "grouped_nms": lambda: grouped_nms(boxes, scores, groups, IOU_THRESH),
        "batched_nms": lambda: batched_nms(boxes, scores, groups, IOU_THRESH),
        "batched_nms per image": lambda: per_image_batched_nms(boxes, scores, groups, batch),
        "coordinate offsets": lambda: coordinate_offsets(boxes, scores, groups),
    }
    timed = {name: (lambda name=name, fn=fn: kept.__setitem__(name, fn())) for name, fn in contenders.items()}
    times = interleaved(timed, repeat=args.repeat, warmup=args.warmup, device=args.device)
    ours = kept["grouped_nms"].sort().values
    rows = []
    for name in list(contenders)[1:]:
        same = torch.equal(ours, kept[name].sort().values)
        rows.append({"benchmark": f"NMS ({args.device})",
                     "case": f"batch {batch} x {NUM_CLASSES} classes x {per_group} candidates, vs {name}",
                     "ssd_zoo": f"grouped_nms: {ms(times['grouped_nms'])}", "alternative": f"{name}: {ms(times[name])}",
                     "speed-up": ratio(times[name], times["grouped_nms"]), "target": "",
                     "outputs": f"{'same' if same else 'DIFFER'} kept boxes ({len(ours)} of {len(scores)})"})
    return rows


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=5, warmup=1)
    cases = [(1, 50), (2, 100)] if args.quick else [(1, 50), (1, 400), (8, 50), (8, 400)]
    for batch, per_group in cases:
        emit(rows_for(args, batch, per_group), args.json)


if __name__ == "__main__":
    main()
