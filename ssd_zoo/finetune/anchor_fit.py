"""Default boxes fitted to the data: ``box_sizes`` and ``aspect_ratios`` that raise the coverage.

The parameters are the ones :func:`~ssd_zoo.ops.default_boxes.default_box_spec` takes: ``L + 1`` sizes for
``L`` maps (map ``k`` has squares of ``s_k`` and ``sqrt(s_k * s_k+1)``) and per map its ratios (each ratio
``r`` adds ``s_k*sqrt(r) x s_k/sqrt(r)`` and its transpose). The number of ratios per map is kept, so the
boxes per location, and with them the head's shapes, stay as they are (a checkpoint still loads).

The search maximises the coverage itself, on the real grids (centres at ``(j + 0.5) * step``, which a
k-means on box shapes alone ignores): coordinate search, one parameter at a time scaled by shrinking factors,
kept when (covered share, mean best IoU) rises. It starts from the better of the model's own boxes and a
data-driven start (sizes at quantiles of ``sqrt(w * h)``, per map a k-means of the log aspect ratios of the
boxes that fall in its size range), so the result never covers the fitting boxes worse than the model's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import yaml
from torch import Tensor

from ssd_zoo.ops.default_boxes import DefaultBoxSpec, box_shapes, grid_sides
from ssd_zoo.finetune.ground_truth import GroundTruth
from ssd_zoo.finetune.anchor_coverage import Coverage, coverage

FACTORS = (0.3, 0.15, 0.07, 0.03)  # relative steps of the search's rounds
MAX_RATIO = 8.0


@dataclass(frozen=True)
class FitResult:
    """``before`` and ``after``: the :class:`Coverage` of the model's boxes and of the fitted ones (``spec``)."""

    before: Coverage
    after: Coverage

    @property
    def spec(self) -> DefaultBoxSpec:
        return self.after.spec

    def model_kwargs(self) -> dict[str, Any]:
        """``{"box_sizes": [...], "aspect_ratios": [[...], ...]}``: builder keywords of the fitted boxes."""
        return {"box_sizes": [_number(s) for s in self.spec.sizes],
                "aspect_ratios": [[_number(r) for r in level] for level in self.spec.aspect_ratios]}

    def yaml(self, model_kwargs: dict[str, Any] | None = None) -> str:
        """The ``model_kwargs:`` block of a recipe config: ``model_kwargs`` (the config's own) with the fitted boxes."""
        block = {"model_kwargs": {**(model_kwargs or {}), **self.model_kwargs()}}
        return yaml.safe_dump(block, default_flow_style=None, sort_keys=False).rstrip()

    def summary(self) -> str:
        """One line: covered share before -> after, at the matching IoU, and the boxes per location."""
        per_location = "/".join(map(str, self.spec.boxes_per_location))
        return (f"covered at IoU {self.after.iou_thresh:g}: {self.before.covered:.1%} with the model's default boxes "
                f"-> {self.after.covered:.1%} fitted (mean best IoU {self.before.best_iou.mean():.3f} -> "
                f"{self.after.best_iou.mean():.3f}); boxes per location {per_location} unchanged")


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 4)  # 4: no float noise, nothing lost


def level_best_iou(boxes: Tensor, spec: DefaultBoxSpec, k: int) -> Tensor:
    """``[N]``: the best IoU of ``boxes`` ``[N, 4]`` with the default boxes of map ``k``, without trying them all.

    For two boxes of fixed shapes the intersection is ``overlap_x(|dx|) * overlap_y(|dy|)``, each non-increasing
    in the offset, so for every box shape the best location is the grid column nearest the box's centre and the
    row nearest it: ``N x shapes`` IoUs instead of ``N x H x W x shapes`` (equal to :func:`best_ious`' maximum).
    """
    size, step, side = spec.input_size, spec.steps[k], grid_sides(spec)[k]
    wh = box_shapes(spec)[k]  # (k, 2) relative to the input
    wh = (wh if spec.clip == "none" else wh.clamp(0, 1)) * size
    grid = (torch.arange(side, dtype=torch.float32) + 0.5) * step
    if spec.clip == "all":
        grid = grid.clamp(0, size)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2)
    guess = ((centre / step) - 0.5).round().long()
    near = (guess[..., None] + torch.tensor([-1, 0, 1])).clamp(0, side - 1)  # (N, 2, 3): a clamped grid's nearest too
    values = grid[near]
    nearest = values.gather(2, (values - centre[..., None]).abs().argmin(dim=2, keepdim=True)).squeeze(2)  # (N, 2)
    anchors = torch.cat([nearest[:, None] - wh[None] / 2, nearest[:, None] + wh[None] / 2], dim=2)  # (N, k, 4)
    top_left = torch.maximum(boxes[:, None, :2], anchors[..., :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], anchors[..., 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)[:, None] + wh.prod(dim=1)[None]
    return (inter / (area - inter)).max(dim=1).values


class _Search:
    """Per-map best IoUs of the fitting boxes, so that a changed parameter re-scores only the maps it touches."""

    def __init__(self, boxes: Tensor, iou_thresh: float) -> None:
        self.boxes, self.iou_thresh = boxes, iou_thresh

    def score(self, per_level: Tensor) -> tuple[float, float]:
        best = per_level.max(dim=0).values
        return float((best >= self.iou_thresh).float().mean()), float(best.mean())

    def all_levels(self, spec: DefaultBoxSpec) -> Tensor:
        return torch.stack([level_best_iou(self.boxes, spec, k) for k in range(len(spec.steps))])  # (L, N)


def _kmeans_1d(values: Tensor, k: int, iterations: int = 20) -> Tensor:
    """``k`` sorted cluster centres of the 1-D ``values`` (Lloyd's algorithm from quantile starts)."""
    centres = torch.quantile(values, (torch.arange(k, dtype=values.dtype) + 0.5) / k)
    for _ in range(iterations):
        nearest = (values[:, None] - centres[None]).abs().argmin(dim=1)
        centres = torch.stack([values[nearest == j].mean() if (nearest == j).any() else centres[j] for j in range(k)])
    return centres.sort().values


def data_start(spec: DefaultBoxSpec, boxes: Tensor) -> DefaultBoxSpec:
    """A start from the data: sizes at evenly spaced quantiles of ``sqrt(w * h)``, ratios per map by k-means."""
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3)
    side, ratio = wh.prod(dim=1).sqrt(), (wh[:, 0] / wh[:, 1]).log().abs()
    levels = len(spec.aspect_ratios)
    sizes = torch.quantile(side, torch.linspace(0.02, 0.98, levels + 1)).tolist()
    ratios = []
    for k, current in enumerate(spec.aspect_ratios):
        inside = (side >= sizes[k]) & ((side < sizes[k + 1]) if k < levels - 1 else True)
        if not current or int(inside.sum()) < len(current):
            ratios.append(tuple(current))
            continue
        centres = _kmeans_1d(ratio[inside], len(current)).exp().clamp(1.0, MAX_RATIO)
        ratios.append(tuple(round(float(r), 2) for r in centres))
    return replace(spec, sizes=tuple(round(s, 1) for s in sizes), aspect_ratios=tuple(ratios))


def _parameters(spec: DefaultBoxSpec) -> list[tuple[int, int]]:
    """The search's coordinates: ``(-1, i)`` for ``sizes[i]``, ``(k, j)`` for ``aspect_ratios[k][j]``."""
    return [(-1, i) for i in range(len(spec.sizes))] + [
        (k, j) for k, level in enumerate(spec.aspect_ratios) for j in range(len(level))]


def _moved(spec: DefaultBoxSpec, parameter: tuple[int, int], scale: float) -> tuple[DefaultBoxSpec, list[int]] | None:
    """``spec`` with one parameter scaled (sizes kept in order, ratios in [1, MAX_RATIO], rounded to 0.1 px and
    0.01), and the maps it changes; None where it does not move."""
    k, j = parameter
    levels = len(spec.aspect_ratios)
    if k < 0:
        low = spec.sizes[j - 1] if j > 0 else 1.0
        high = spec.sizes[j + 1] if j < levels else 2.0 * spec.input_size
        value = round(min(max(spec.sizes[j] * scale, low), high), 1)
        if value == spec.sizes[j]:
            return None
        sizes = spec.sizes[:j] + (value,) + spec.sizes[j + 1:]
        return replace(spec, sizes=sizes), [m for m in (j - 1, j) if 0 <= m < levels]
    level = spec.aspect_ratios[k]
    value = round(min(max(level[j] * scale, 1.0), MAX_RATIO), 2)
    if value == level[j]:
        return None
    ratios = spec.aspect_ratios[:k] + (level[:j] + (value,) + level[j + 1:],) + spec.aspect_ratios[k + 1:]
    return replace(spec, aspect_ratios=ratios), [k]


def search(spec: DefaultBoxSpec, boxes: Tensor, iou_thresh: float, factors: tuple[float, ...] = FACTORS,
           passes: int = 3) -> DefaultBoxSpec:
    """Coordinate search from ``spec`` (see the module docstring); ``boxes`` ``[N, 4]`` xyxy pixels of the input."""
    state = _Search(boxes, iou_thresh)
    best_levels = state.all_levels(spec)
    best_score = state.score(best_levels)
    for factor in factors:
        for _ in range(passes):
            improved = False
            for parameter in _parameters(spec):
                for scale in (1 - factor, 1 + factor, 1 - factor / 2, 1 + factor / 2):
                    moved = _moved(spec, parameter, scale)
                    if moved is None:
                        continue
                    levels = best_levels.clone()
                    for k in moved[1]:
                        levels[k] = level_best_iou(boxes, moved[0], k)
                    score = state.score(levels)
                    if score > best_score:
                        spec, best_levels, best_score, improved = moved[0], levels, score, True
            if not improved:
                break
    return spec


def fit(
    model_or_spec: Any,
    boxes: GroundTruth | Tensor,
    labels: Tensor | None = None,
    *,
    iou_thresh: float | None = None,
    max_boxes: int = 5000,
    seed: int = 0,
) -> FitResult:
    """Fit ``box_sizes`` and ``aspect_ratios`` of ``model_or_spec`` (an SSD or a spec) to ``boxes``.

    ``boxes``, ``labels``, ``iou_thresh`` as in :func:`~ssd_zoo.finetune.anchor_coverage`. The search scores at most
    ``max_boxes`` boxes (a seeded sample); before and after are reported on all of them, and where the fitted
    boxes would cover them worse (possible only through the sample), the model's boxes are returned.
    """
    before = coverage(model_or_spec, boxes, labels, iou_thresh=iou_thresh)
    spec = before.spec
    if spec.shapes is not None:  # the fit moves sizes and ratios, which explicit shapes would override
        raise ValueError(f"fit: the default boxes are given as explicit shapes ({spec.describe()}, e.g. a TF Object "
                         "Detection API graph's anchors); expected the paper's sizes and aspect ratios to fit")
    xyxy = boxes.boxes if isinstance(boxes, GroundTruth) else boxes.float()
    if len(xyxy) > max_boxes:
        xyxy = xyxy[torch.randperm(len(xyxy), generator=torch.Generator().manual_seed(seed))[:max_boxes]]
    state = _Search(xyxy, before.iou_thresh)
    starts = [spec, data_start(spec, xyxy)]
    start = max(starts, key=lambda s: state.score(state.all_levels(s)))
    fitted = search(start, xyxy, before.iou_thresh)
    after = coverage(fitted, boxes, labels, iou_thresh=before.iou_thresh)
    if (after.covered, float(after.best_iou.mean())) < (before.covered, float(before.best_iou.mean())):
        after = before
    return FitResult(before, after)
