"""Assemble an SSD from fixed parts and load its checkpoint: what every publisher's registered builder ends with.

The builder chooses the parts (backbone, head type, default boxes, normalisation, post-processing defaults);
the checkpoint (if any) then decides what it recorded (default boxes, normalisation, class names), and a
record that contradicts the parts raises when the weights are loaded (see :meth:`ssd_zoo.SSD._check_record`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ssd_zoo.ops.default_boxes import DefaultBoxGenerator, DefaultBoxSpec
from ssd_zoo.transform import SSDTransform
from ssd_zoo.weights.resolve import Checkpoint
from ssd_zoo.models.ssd import SSD


def assemble_ssd(
    backbone: nn.Module,
    head: Callable[[list[int], list[int], int], nn.Module],
    spec: DefaultBoxSpec,
    num_classes: int,
    checkpoint: Checkpoint | None,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    explicit_boxes: bool = False,
    **kwargs: Any,
) -> SSD:
    """An :class:`SSD` of ``backbone`` (with ``out_channels``), ``head(in_channels, boxes_per_location,
    num_classes)`` and ``spec``'s default boxes at ``spec.input_size``, normalising RGB in [0, 1] with
    ``mean``/``std``; ``checkpoint``'s weights loaded (every key and shape must fit).

    ``explicit_boxes``: the caller chose ``spec`` (e.g. ``anchors=``), so a checkpoint recording other default
    boxes raises instead of replacing them. ``kwargs`` reach :class:`SSD` (``score_thresh``, ``nms_thresh``, ...).
    """
    categories = None
    if checkpoint is not None:
        spec = checkpoint.default_boxes(spec, explicit=explicit_boxes)
        (mean, std), categories = checkpoint.normalisation(tuple(mean), tuple(std)), checkpoint.categories
    model = SSD(backbone, head(backbone.out_channels, spec.boxes_per_location, num_classes), DefaultBoxGenerator(spec),
                SSDTransform(spec.input_size, tuple(mean), tuple(std)), num_classes, categories=categories, **kwargs)
    if checkpoint is not None:
        checkpoint.load_into(model)
    return model
