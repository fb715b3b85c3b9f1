"""Assemble an SSD from fixed parts and load its checkpoint: what every registered builder ends with.

The builder chooses the parts (backbone, head type, default boxes, normalisation, post-processing defaults);
the checkpoint (if any) then decides what it recorded (default boxes, normalisation, class names, resizing),
and a record that contradicts the parts raises when the weights are loaded (see
:meth:`ssd_zoo.SSD._check_record`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from ssd_zoo.ops.default_boxes import DefaultBoxGenerator, DefaultBoxSpec
from ssd_zoo.transform import SSDTransform
from ssd_zoo.weights.resolve import Checkpoint
from ssd_zoo.models.ssd import SSD


def assemble_ssd(
    backbone: Callable[[DefaultBoxSpec], nn.Module],
    head: Callable[[list[int], list[int], int], nn.Module],
    spec: DefaultBoxSpec,
    num_classes: int,
    checkpoint: Checkpoint | None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    explicit_boxes: bool = False,
    thresholds: Mapping[str, Any] | None = None,
    resize: str | None = None,
    pad_fill: Sequence[float] | None = None,
    **kwargs: Any,
) -> SSD:
    """An :class:`SSD` with ``checkpoint``'s weights loaded (every key and shape must fit).

    Args:
        backbone: ``spec -> backbone`` (with ``out_channels``), given the default boxes finally chosen (the
            checkpoint's, where it records them), so that a backbone can fit its maps to their grid.
        head: ``head(in_channels, boxes_per_location, num_classes)``.
        spec: the builder's default boxes at ``spec.input_size`` (the model's square input).
        num_classes: classes including background.
        checkpoint: the weights to load (they decide default boxes, normalisation, class names and resizing
            where they record them), or None.
        mean, std: RGB normalisation on the 0..1 scale; None: the backbone's own ``mean`` / ``std`` (e.g. a
            timm backbone's pretrained configuration).
        explicit_boxes: the caller chose ``spec`` (``anchors=``, ``box_sizes=``, ...), so a checkpoint recording
            other default boxes raises instead of replacing them.
        thresholds: the builder's post-processing defaults (e.g. a publisher's own), under ``kwargs``.
        resize, pad_fill: :class:`~ssd_zoo.transform.SSDTransform`'s (None: the checkpoint's, else ``"stretch"``).
        kwargs: the rest of :class:`SSD`'s keywords (``score_thresh``, ``nms_thresh``, ``iou_thresh``, ...).
    """
    categories = None
    if checkpoint is not None:
        spec = checkpoint.default_boxes(spec, explicit=explicit_boxes)
    network = backbone(spec)
    mean = tuple(network.mean if mean is None else mean)
    std = tuple(network.std if std is None else std)
    if checkpoint is not None:
        (mean, std), categories = checkpoint.normalisation(mean, std), checkpoint.categories
        resize, pad_fill = checkpoint.resize(resize, pad_fill)
    model = SSD(network, head(network.out_channels, spec.boxes_per_location, num_classes), DefaultBoxGenerator(spec),
                SSDTransform(spec.input_size, mean, std, resize or "stretch", pad_fill), num_classes,
                categories=categories, **{**(thresholds or {}), **kwargs})
    if checkpoint is not None:
        checkpoint.load_into(model)
    return model
