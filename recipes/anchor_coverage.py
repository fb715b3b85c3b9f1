"""How well a config's default boxes cover a dataset's objects: per class, the share of ground-truth boxes
that no default box overlaps by the matching IoU (each of those trains only the one box the matcher forces).

    python recipes/anchor_coverage.py --config recipes/configs/shapes_quick.yaml --data-root data/shapes
    python recipes/anchor_coverage.py --config recipes/configs/shapes_quick.yaml --data-root data/shapes \
        --set 'model_kwargs={anchors: coco}'          # COCO's boxes at the same input, for comparison

Boxes are taken as the model sees them: the training split's annotations (difficult ones as the config keeps
them), padded to squares first where ``pad_to_square`` is set, stretched to the ``S x S`` input. Reads only
the annotations and the image headers. Prints a table; ``--json`` writes it too.
"""
from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from PIL import Image
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `recipes` importable

from recipes.common import build_model  # noqa: E402
from recipes.config import TrainConfig, load_config, parse_override  # noqa: E402
from ssd_zoo.data import VOCDataset, parse_voc_xml  # noqa: E402
from ssd_zoo.ops.default_boxes import default_boxes, grid_sides  # noqa: E402


def input_boxes(cfg: TrainConfig, dataset: VOCDataset, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(boxes [N, 4] xyxy pixels of the S x S input, labels [N])`` of ``dataset``'s annotations."""
    boxes, labels = [], []
    for year_dir, image_id in dataset.items:
        xml = year_dir / "Annotations" / f"{image_id}.xml"
        parsed = parse_voc_xml(xml, dataset.class_names)
        keep = torch.ones_like(parsed["difficult"]) if cfg.keep_difficult else ~parsed["difficult"]
        node = ET.parse(xml).getroot().find("size")
        if node is not None and node.findtext("width"):
            width, height = int(node.findtext("width")), int(node.findtext("height"))
        else:
            with Image.open(dataset.image_path(year_dir, image_id, parsed["filename"])) as image:
                width, height = image.size
        if cfg.pad_to_square:
            width = height = max(width, height)
        boxes.append(parsed["boxes"][keep] * torch.tensor([size / width, size / height] * 2))
        labels.append(parsed["labels"][keep])
    return torch.cat(boxes), torch.cat(labels)


def coverage(boxes: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor, names: tuple[str, ...],
             iou: float) -> dict[str, dict[str, float]]:
    """Per class: ``boxes`` (count), ``uncovered`` (share whose best IoU with ``anchors`` is below ``iou``),
    ``median_best_iou``."""
    best = torch.cat([box_iou(chunk, anchors).max(dim=1).values for chunk in boxes.split(4096)])
    table = {}
    for index, name in enumerate(names, start=1):
        mine = best[labels == index]
        if len(mine):
            table[name] = {"boxes": len(mine), "uncovered": float((mine < iou).float().mean()),
                           "median_best_iou": float(mine.median())}
    return table


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, required=True, help="a YAML file in recipes/configs/")
    p.add_argument("--data-root", help="VOCdevkit folder (overrides data_root)")
    p.add_argument("--iou", type=float, help="the matching IoU (default: the model's iou_thresh)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--json", type=Path, help="also write the table here")
    args = p.parse_args(argv)
    overrides = dict(parse_override(item) for item in args.set)
    cfg = load_config(args.config, {**overrides, **({"data_root": args.data_root} if args.data_root else {})})
    dataset = VOCDataset(cfg.data_root, cfg.train_splits, keep_difficult=True, class_names=cfg.class_names)
    model = build_model(cfg, len(dataset.class_names) + 1)
    spec, size = model.default_boxes.spec, model.input_size
    anchors = default_boxes(spec, [(side, side) for side in grid_sides(spec)], (size, size))
    iou = args.iou if args.iou is not None else model.iou_thresh
    boxes, labels = input_boxes(cfg, dataset, size)
    table = coverage(boxes, labels, anchors, dataset.class_names, iou)
    print(f"default boxes: {spec.describe()}; {len(anchors)} boxes; matching IoU {iou}")
    print(f"{'class':<14}{'boxes':>8}{'best IoU < threshold':>24}{'median best IoU':>18}")
    for name, row in table.items():
        print(f"{name:<14}{row['boxes']:>8}{row['uncovered']:>23.1%} {row['median_best_iou']:>17.3f}")
    if args.json:
        args.json.write_text(json.dumps({"default_boxes": spec.to_dict(), "iou": iou, "classes": table}, indent=1))
    return table


if __name__ == "__main__":
    main()
