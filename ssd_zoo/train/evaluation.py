"""Evaluation during and after training: batched inference, VOC07 and VOC2010+ mAP, metrics.json, VOC results files,
and pictures of detections."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, SequentialSampler
from tqdm import tqdm

from ssd_zoo.detect.results import write_picture
from ssd_zoo.data import to_device
from ssd_zoo.metrics import VOCEvaluator


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, class_names: Sequence[str], device: torch.device,
             amp: bool = False, progress: bool = True) -> tuple[dict[str, Any], list[tuple[str, dict]]]:
    """Run ``model`` (eval mode, restored after) over ``loader`` and compute VOC mAP.

    Returns ``(metrics, detections)``: ``metrics`` = ``{"map_voc07": float, "map_voc12": float, "ap": {name:
    VOC07 AP}, "ap_voc12": {name: AP}, "num_images": int}``; ``detections`` = per image ``(image id, {"boxes"
    [D, 4] xyxy 0-based pixels, "scores" [D], "labels" [D]})`` on the CPU, the image id from ``dataset.ids``
    (see :func:`_image_name`). NaN APs (a class without ground truth) become None in ``metrics`` so that it is
    valid JSON. ``loader`` may collate with :func:`ssd_zoo.data.collate` or torchvision's ``tuple(zip(*batch))``.
    """
    was_training = model.training
    model.eval()
    num_classes = len(class_names) + 1
    voc = VOCEvaluator(num_classes, class_names=class_names)
    detections: list[tuple[str, dict]] = []
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    for images, targets in tqdm(loader, desc="eval", disable=not progress, dynamic_ncols=True):
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            predictions = model([im.to(device, non_blocking=True) for im in images])
        predictions = [{k: v.float() if v.is_floating_point() else v for k, v in p.items()}
                       for p in to_device(predictions, "cpu")]
        voc.update(predictions, targets)
        detections.extend((_image_name(loader, t, len(detections)), p) for t, p in zip(targets, predictions))
    model.train(was_training)
    r07, r12 = voc.compute(use_07_metric=True), voc.compute(use_07_metric=False)
    metrics = {
        "map_voc07": _number(r07["map"]), "map_voc12": _number(r12["map"]),
        "ap": {name: _number(ap) for name, ap in r07["ap_by_name"].items()},
        "ap_voc12": {name: _number(ap) for name, ap in r12["ap_by_name"].items()},
        "num_images": len(detections),
    }
    return metrics, detections


def _image_name(loader: DataLoader, target: dict, position: int) -> str:
    """The id of the image at ``position`` of ``loader``, for results files: ``dataset.ids[position]`` when the
    loader runs the dataset in order and the dataset lists ids (ssd_zoo's datasets, torchvision's
    CocoDetection), else the target's ``image_id`` (a tensor, number or str), else the position."""
    ids = getattr(loader.dataset, "ids", None)
    if ids is not None and isinstance(loader.sampler, SequentialSampler) and len(ids) == len(loader.dataset):
        return str(ids[position])
    image_id = target.get("image_id", position)
    return str(image_id.item() if isinstance(image_id, torch.Tensor) else image_id)


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def ap_table(metrics: dict[str, Any]) -> str:
    """The per-class AP table (VOC07 11-point and VOC2010+ area) with both mAPs, as printable text."""
    def cell(value: float | None) -> str:
        return "   -  " if value is None else f"{100 * value:6.2f}"
    width = max([len("class"), *map(len, metrics["ap"])])
    lines = [f"{'class':<{width}}  VOC07  VOC12", "-" * (width + 15)]
    lines += [f"{name:<{width}} {cell(ap)} {cell(metrics['ap_voc12'][name])}" for name, ap in metrics["ap"].items()]
    lines += ["-" * (width + 15), f"{'mAP':<{width}} {cell(metrics['map_voc07'])} {cell(metrics['map_voc12'])}"]
    return "\n".join(lines)


def write_metrics(metrics: dict[str, Any], output_dir: str | Path, **extra: Any) -> Path:
    """``output_dir/metrics.json``: ``{"map_voc07", "map_voc12", "ap": {class: AP}, ...}`` plus ``extra``."""
    path = Path(output_dir) / "metrics.json"
    path.write_text(json.dumps({**metrics, **extra}, indent=2) + "\n")
    return path


def write_voc_results(detections: list[tuple[str, dict]], class_names: Sequence[str], output_dir: str | Path,
                      split: str = "test") -> Path:
    """The devkit's results files ``results/comp4_det_<split>_<class>.txt`` under ``output_dir``.

    One line per detection, ``<image_id> <score> <x1> <y1> <x2> <y2>``, boxes in the devkit's 1-based pixels.
    """
    folder = Path(output_dir) / "results"
    folder.mkdir(parents=True, exist_ok=True)
    lines: list[list[str]] = [[] for _ in class_names]
    for image_id, det in detections:
        for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
            x1, y1, x2, y2 = (v + 1 for v in box)
            lines[label - 1].append(f"{image_id} {score:.6f} {x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}\n")
    for name, rows in zip(class_names, lines):
        (folder / f"comp4_det_{split}_{name}.txt").write_text("".join(rows))
    return folder


def draw_detections(dataset: Any, detections: list[tuple[str, dict]], class_names: Sequence[str],
                    output_dir: str | Path, count: int, min_score: float = 0.5) -> list[Path]:
    """Save the first ``count`` test images with their detections (score >= ``min_score``) drawn by
    :func:`ssd_zoo.detect.draw.draw_detections` (one colour per class, a legend, small images upscaled), as PNG
    files ``output_dir/pictures/<image_id>.png`` (written whole or not at all, by
    :func:`ssd_zoo.detect.results.write_picture`); returns their paths. ``class_names``: no background."""
    names = ["__background__", *class_names]
    paths = []
    for index, (image_id, det) in enumerate(detections[:count]):
        paths.append(Path(output_dir) / "pictures" / f"{Path(image_id).name}.png")
        write_picture(paths[-1], dataset[index][0], det, names, min_score=min_score)
    return paths


def evaluate_and_report(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool, output_dir: str | Path,
                        draw: int = 0, draw_score: float = 0.5, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`evaluate`, then write ``metrics.json`` (plus the entries of ``info``, e.g. the model's name), the VOC
    results files and ``draw`` pictures into ``output_dir`` and print the AP table; returns the metrics."""
    names = loader.dataset.class_names
    own = getattr(model, "class_names", None)
    if own is not None and [n.lower() for n in own[1:]] != [n.lower() for n in names]:
        raise ValueError(f"the model labels {own[1:]} (labels 1..{len(own) - 1}), the test set {list(names)}; build "
                         "the model with class_names=<the test set's> (head surgery matches them by name)")
    metrics, detections = evaluate(model, loader, names, device, amp)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    path = write_metrics(metrics, output_dir, **(info or {}))
    folder = write_voc_results(detections, names, output_dir)
    if draw:
        draw_detections(loader.dataset, detections, own[1:] if own else names, output_dir, draw, draw_score)
    print(ap_table(metrics))
    print(f"wrote {path} and {folder}/comp4_det_test_<class>.txt")
    return metrics
