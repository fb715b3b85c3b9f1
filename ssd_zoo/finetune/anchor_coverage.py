"""How well an SSD's default boxes cover a dataset's objects.

The matcher (:func:`ssd_zoo.ops.matcher.match`) trains a default box on an object when their IoU reaches
``iou_thresh``; an object whose *best* default box stays below it trains only that one box, forced. So the
report is, per class and per object size, the share of ground-truth boxes whose best IoU with any default
box reaches ``iou_thresh`` ("covered"), the distribution of those best IoUs, and how many default boxes
reach the threshold per object ("positives").

Size buckets use ``sqrt(w * h)`` of the box at the network input, as a fraction of the input side (default
boxes scale with the input, so the buckets do too): small below ``edges[0]`` (0.1: 30 px of a 300 input),
medium up to ``edges[1]`` (0.3: 90 px of 300), large above.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

from ssd_zoo.ops.default_boxes import DefaultBoxSpec, default_boxes, grid_sides
from ssd_zoo.finetune.ground_truth import GroundTruth

SIZE_EDGES: tuple[float, float] = (0.1, 0.3)
SIZE_NAMES: tuple[str, str, str] = ("small", "medium", "large")
QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
CHUNK = 2048  # ground-truth boxes per box_iou call: [2048, 8732] float32 is 72 MB


def spec_of(model_or_spec: Any) -> tuple[DefaultBoxSpec, float]:
    """``(default-box spec, matching IoU)`` of an SSD (its ``iou_thresh``) or of a spec (0.5, the paper's)."""
    if isinstance(model_or_spec, DefaultBoxSpec):
        return model_or_spec, 0.5
    generator = getattr(model_or_spec, "default_boxes", None)
    spec = getattr(generator, "spec", None)
    if not isinstance(spec, DefaultBoxSpec):
        raise TypeError(f"expected an ssd_zoo SSD or a DefaultBoxSpec, found {type(model_or_spec).__name__}")
    return spec, float(model_or_spec.iou_thresh)


def anchor_boxes(spec: DefaultBoxSpec) -> Tensor:
    """All default boxes of ``spec`` on its own square grids: ``[A, 4]`` xyxy pixels of the input."""
    size = spec.input_size
    return default_boxes(spec, [(side, side) for side in grid_sides(spec)], (size, size))


def best_ious(boxes: Tensor, anchors: Tensor, iou_thresh: float) -> tuple[Tensor, Tensor]:
    """``boxes`` ``[N, 4]``, ``anchors`` ``[A, 4]`` xyxy -> (best IoU ``[N]``, default boxes at ``>= iou_thresh``
    ``[N]`` int64), ``CHUNK`` boxes at a time."""
    best, positives = [], []
    for chunk in boxes.split(CHUNK):
        iou = box_iou(chunk, anchors)  # (chunk, A)
        best.append(iou.max(dim=1).values if anchors.numel() else iou.new_zeros(len(chunk)))
        positives.append((iou >= iou_thresh).sum(dim=1))
    if not best:
        return boxes.new_zeros(0), torch.zeros(0, dtype=torch.int64)
    return torch.cat(best), torch.cat(positives)


def size_buckets(boxes: Tensor, input_size: int, edges: tuple[float, float] = SIZE_EDGES) -> Tensor:
    """``[N]`` int64: 0 small, 1 medium, 2 large by ``sqrt(w * h) / input_size`` against ``edges``."""
    side = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)).sqrt() / input_size
    return torch.bucketize(side, torch.tensor(edges, dtype=side.dtype), right=True)


@dataclass(frozen=True)
class Coverage:
    """The report of :func:`coverage`. Per ground-truth box ``[N]``: ``best_iou``, ``positives``, ``labels``
    (``1..K``, naming ``class_names[label - 1]``), ``buckets`` (index into :data:`SIZE_NAMES`)."""

    spec: DefaultBoxSpec
    iou_thresh: float
    best_iou: Tensor
    positives: Tensor
    labels: Tensor
    buckets: Tensor
    class_names: tuple[str, ...]
    edges: tuple[float, float] = SIZE_EDGES
    source: str = field(default="")

    @property
    def covered(self) -> float:
        """Share of all boxes whose best default box reaches ``iou_thresh``."""
        return float((self.best_iou >= self.iou_thresh).float().mean()) if len(self.best_iou) else 0.0

    def groups(self) -> list[tuple[str, str, Tensor]]:
        """``(kind, name, mask [N])`` for "all", each class with boxes, each size bucket with boxes."""
        out = [("all", "all", torch.ones_like(self.labels, dtype=torch.bool))]
        for label, name in enumerate(self.class_names, start=1):
            out.append(("class", name, self.labels == label))
        for index, name in enumerate(SIZE_NAMES):
            out.append(("size", name, self.buckets == index))
        return [group for group in out if group[2].any()]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per group: ``kind``, ``name``, ``boxes``, ``covered`` (share), ``quantiles`` (best IoU at
        :data:`QUANTILES`), ``mean_positives``."""
        rows = []
        for kind, name, mask in self.groups():
            best = self.best_iou[mask]
            rows.append({"kind": kind, "name": name, "boxes": int(mask.sum()),
                         "covered": float((best >= self.iou_thresh).float().mean()),
                         "quantiles": [round(float(q), 4) for q in torch.quantile(best, torch.tensor(QUANTILES))],
                         "mean_positives": float(self.positives[mask].float().mean())})
        return rows

    def histogram(self, bins: int = 10) -> list[int]:
        """Counts of best IoUs in ``bins`` equal bins over [0, 1]."""
        return torch.histc(self.best_iou.float(), bins=bins, min=0.0, max=1.0).long().tolist()

    def worst_classes(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` classes with the lowest covered share: ``(name, share)``, worst first."""
        rows = sorted((row for row in self.rows() if row["kind"] == "class"), key=lambda row: row["covered"])
        return [(row["name"], row["covered"]) for row in rows[:n]]

    def warning(self, below: float = 0.9) -> str | None:
        """A one-line warning when the covered share is below ``below`` (naming the worst classes), else None."""
        if self.covered >= below:
            return None
        worst = ", ".join(f"{name} {share:.0%}" for name, share in self.worst_classes())
        return (f"warning: only {self.covered:.1%} of the ground-truth boxes reach IoU {self.iou_thresh:g} with a "
                f"default box (below {below:.0%}); worst classes: {worst}. Fit the boxes to the data: "
                "ssd-zoo anchors DATA --config CONFIG --fit")

    def table(self) -> str:
        """The report as text: a header line, one row per group, the histogram of best IoUs."""
        head = (f"default boxes: {self.spec.describe()}; {sum(_counts(self.spec))} boxes; matching IoU "
                f"{self.iou_thresh:g}; sizes: small < {self.edges[0]:g}, large > {self.edges[1]:g} of the input side")
        lines = [head, f"{'':<16}{'boxes':>7}{'covered':>9}   best IoU p10 p25 p50 p75 p90   positives"]
        for row in self.rows():
            label = row["name"] if row["kind"] != "size" else f"[{row['name']}]"
            quantiles = " ".join(f"{q:.2f}" for q in row["quantiles"])
            lines.append(f"{label:<16}{row['boxes']:>7}{row['covered']:>9.1%}   {quantiles:>24}   "
                         f"{row['mean_positives']:>9.1f}")
        lines.append("best IoU histogram (0-0.1 ... 0.9-1): " + " ".join(map(str, self.histogram())))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON): ``default_boxes`` (the spec's dict), ``iou_thresh``, ``covered``, ``edges``,
        ``rows`` (:meth:`rows`), ``histogram``, ``source``."""
        return {"default_boxes": self.spec.to_dict(), "iou_thresh": self.iou_thresh, "covered": self.covered,
                "edges": list(self.edges), "rows": self.rows(), "histogram": self.histogram(), "source": self.source}


def _counts(spec: DefaultBoxSpec) -> list[int]:
    return [side * side * k for side, k in zip(grid_sides(spec), spec.boxes_per_location)]


def coverage(
    model_or_spec: Any,
    boxes: GroundTruth | Tensor,
    labels: Tensor | None = None,
    *,
    class_names: tuple[str, ...] | None = None,
    iou_thresh: float | None = None,
    edges: tuple[float, float] = SIZE_EDGES,
) -> Coverage:
    """How well the default boxes of ``model_or_spec`` (an SSD or a :class:`DefaultBoxSpec`) cover ``boxes``.

    ``boxes``: a :class:`GroundTruth` (:func:`load_boxes`), or ``[N, 4]`` xyxy pixels of the network input with
    ``labels`` ``[N]`` in ``1..K`` (default: all 1) and ``class_names`` (default ``class 1``, ...).
    ``iou_thresh``: default the model's matching IoU (0.5 for a spec). See the module docstring.
    """
    spec, default_iou = spec_of(model_or_spec)
    iou_thresh = default_iou if iou_thresh is None else float(iou_thresh)
    source = ""
    if isinstance(boxes, GroundTruth):
        if boxes.input_size != spec.input_size:
            raise ValueError(f"coverage: the boxes were mapped to a {boxes.input_size} px input, the default boxes "
                             f"are for {spec.input_size} px; load them with input_size={spec.input_size}")
        boxes, labels, class_names, source = boxes.boxes, boxes.labels, boxes.class_names, boxes.source
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"coverage: expected boxes [N, 4] xyxy, found shape {list(boxes.shape)}")
    if len(boxes) == 0:
        raise ValueError("coverage: expected ground-truth boxes, found none")
    labels = torch.ones(len(boxes), dtype=torch.int64) if labels is None else labels.long()
    if labels.shape != (len(boxes),):
        raise ValueError(f"coverage: expected labels [{len(boxes)}], found shape {list(labels.shape)}")
    names = int(labels.max())
    class_names = tuple(class_names) if class_names is not None else tuple(f"class {i}" for i in range(1, names + 1))
    best, positives = best_ious(boxes.float(), anchor_boxes(spec), iou_thresh)
    return Coverage(spec, iou_thresh, best, positives, labels, size_buckets(boxes, spec.input_size, edges),
                    class_names, edges, source)
