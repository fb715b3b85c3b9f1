"""The default-box coverage report of a model on a dataset: the one entry point that ``ssd-zoo anchors``, the
start of training (``recipes/train_voc.py``, ``ssd-zoo train``) and notebooks call.

    >>> report = coverage_report(model, "data/shapes", pad_to_square=True, fit=True)
    >>> print(report.text())            # the table, a warning below 90% covered, the fitted boxes and their YAML

It reads the ground truth as the model sees it (:func:`~ssd_zoo.finetune.ground_truth.load_boxes`), measures
the coverage (:func:`~ssd_zoo.finetune.anchor_coverage.coverage`) and, with ``fit``, fits better boxes
(:func:`~ssd_zoo.finetune.anchor_fit.fit`), checking that the model's builder takes them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ssd_zoo.finetune.anchor_coverage import Coverage, coverage
from ssd_zoo.finetune.anchor_fit import FitResult, fit
from ssd_zoo.finetune.ground_truth import GroundTruth, load_boxes
from ssd_zoo.registry import build

WARN_BELOW = 0.9  # a covered share under this prints a warning naming the worst classes


@dataclass(frozen=True)
class CoverageReport:
    """``truth`` (the boxes at the model's input), ``before`` (the model's default boxes' :class:`Coverage`),
    ``fitted`` (a :class:`FitResult`, with ``fit=True``), ``snippet_kwargs`` (the config's ``model_kwargs`` the
    fitted YAML block starts from) and ``note`` (set when the model's builder does not build the fitted boxes)."""

    truth: GroundTruth
    before: Coverage
    fitted: FitResult | None = None
    snippet_kwargs: dict[str, Any] | None = None
    note: str | None = None

    def headline(self, name: str) -> str:
        """One line: how many boxes in how many images of which source, at which input side."""
        size = self.truth.input_size
        return (f"{name}: {len(self.truth.boxes)} ground-truth boxes in {self.truth.images} images of "
                f"{self.truth.source}, at the {size}x{size} input")

    def text(self) -> str:
        """The coverage table, a warning below :data:`WARN_BELOW`, then (fitted) the fitted table, the summary,
        the ``model_kwargs:`` YAML block for a training config, and the note if any."""
        lines = [self.before.table()]
        warning = self.before.warning(WARN_BELOW)
        if warning:
            lines.append(warning)
        if self.fitted is not None:
            lines += ["", "fitted default boxes:", self.fitted.after.table(), self.fitted.summary(),
                      "for the recipe config:", self.fitted.yaml(self.snippet_kwargs)]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON): ``before`` and, fitted, ``after`` (:meth:`Coverage.to_dict`) and ``model_kwargs``."""
        out: dict[str, Any] = {"before": self.before.to_dict()}
        if self.fitted is not None:
            out.update(after=self.fitted.after.to_dict(), model_kwargs=self.fitted.model_kwargs())
        return out


def _builds_the_fit(model: nn.Module, result: FitResult) -> str | None:
    """None when the model's builder, given the fitted keywords, builds the fitted boxes; else a note why not."""
    builder = getattr(model, "builder", None)
    if builder is None:
        return "note: the model records no builder; use the fitted boxes with a model whose builder takes them"
    name = builder["name"]
    try:
        built = build(name, **{**builder["kwargs"], **result.model_kwargs()}).default_boxes.spec
    except (TypeError, ValueError) as error:
        return f"note: {name}'s builder does not take these keywords ({error}); use the boxes with a model that does"
    if built.describe() != result.spec.describe():  # describe(): to 6 digits, as the snippet rounds
        return f"note: {name} builds {built.describe()} from these keywords, not the fitted boxes"
    return None


def coverage_report(
    model: nn.Module,
    source: str | Path,
    *,
    splits: str = "2007-trainval",
    keep_difficult: bool = False,
    pad_to_square: bool = False,
    class_names: Sequence[str] | None = None,
    iou_thresh: float | None = None,
    fit_boxes: bool = False,
    snippet_kwargs: dict[str, Any] | None = None,
) -> CoverageReport:
    """How well ``model``'s default boxes cover the boxes of ``source`` (a VOCdevkit folder or a COCO ``.json``;
    ``splits``, ``keep_difficult``, ``pad_to_square``, ``class_names`` as in :func:`load_boxes`), matched at
    ``iou_thresh`` (default: the model's). ``fit_boxes``: also fit sizes and ratios that cover better, and check
    that the model's builder takes them; ``snippet_kwargs``: the config's ``model_kwargs`` for the YAML block."""
    truth = load_boxes(source, model.input_size, splits=splits, keep_difficult=keep_difficult,
                       pad_to_square=pad_to_square, class_names=class_names)
    before = coverage(model, truth, iou_thresh=iou_thresh)
    if not fit_boxes:
        return CoverageReport(truth, before)
    result = fit(model, truth, iou_thresh=iou_thresh)
    return CoverageReport(truth, before, result, snippet_kwargs, _builds_the_fit(model, result))
