"""From network outputs to detections: softmax, decode, clip, per-class top-k, per-class NMS, best per image.

Every (image, class) pair is its own NMS group; the candidates of the whole batch arrive sorted by group.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import nms

from ssd_zoo.ops import box_coder

# How class logits become scores: "softmax" over the classes, background included (the SSD paper, torchvision);
# "sigmoid" of each logit on its own (the TF Object Detection API's SSDs, trained with a sigmoid loss).
SCORE_ACTIVATIONS = ("softmax", "sigmoid")


@dataclass(frozen=True)
class Thresholds:
    """The post-processing settings, declared once: :func:`select_detections`, :class:`ssd_zoo.SSD` and the
    exported graph (:func:`ssd_zoo.deploy.export.padded_detections`) take them as keywords of these names.

    Attributes:
        score_thresh: a detection needs a score (softmax or sigmoid) above this.
        nms_thresh: IoU above which NMS suppresses the lower-scoring box of a class.
        topk_candidates: per image and class, the most boxes that enter NMS.
        detections_per_img: per image, the most detections kept (best scores first).
        clip_before_nms: NMS compares boxes clipped to the input (torchvision); False: boxes as decoded
            (ssd.pytorch, lufficc, qfgaohao, NVIDIA), so that a border box overlaps as in those projects. The
            detections are clipped either way.
    """

    score_thresh: float = 0.01
    nms_thresh: float = 0.45
    topk_candidates: int = 400
    detections_per_img: int = 200
    clip_before_nms: bool = True

    def as_dict(self) -> dict[str, float]:
        """``{name: value}``: keywords of :func:`select_detections`."""
        return dataclasses.asdict(self)


# ssd.pytorch's evaluation settings (score 0.01, NMS IoU 0.45, 200 per image): every SSD's defaults here.
DEFAULT_THRESHOLDS = Thresholds()


def grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float) -> Tensor:
    """NMS within each group, for boxes already sorted by group: ``torchvision.ops.batched_nms``'s result.

    ``boxes`` ``[N, 4]`` xyxy, ``scores`` ``[N]``, ``groups`` int64 ``[N]`` non-decreasing. Returns the indices
    kept, by decreasing score.
    """
    # One NMS call per non-empty group, on a slice. batched_nms would instead scan all N boxes once per group
    # (at batch 8 that took a third of the forward pass), or shift the groups apart and run one NMS whose cost
    # grows with N squared; NMS is sequential within a group, so no tensor op replaces this loop.
    kept, start = [], 0
    for count in torch.bincount(groups).tolist():
        if count:
            kept.append(start + nms(boxes[start:start + count], scores[start:start + count], iou_thresh))
        start += count
    kept = torch.cat(kept) if kept else groups.new_zeros(0)
    return kept[scores[kept].sort(descending=True, stable=True).indices]


def decode_predictions(cls_logits: Tensor, box_regression: Tensor, default_boxes: Tensor,
                       activation: str = "softmax") -> dict[str, Tensor]:
    """The head's outputs as probabilities and boxes, per default box (what :meth:`SSD.dense_predictions` returns).

    Args:
        cls_logits: ``[B, A, C]``, class 0 is background; box_regression: ``[B, A, 4]``;
        default_boxes: ``[A, 4]`` xyxy pixels of the network input;
        activation: one of :data:`SCORE_ACTIVATIONS`.

    Returns:
        ``scores`` float32 ``[B, A, C]`` probabilities (index 0 background; with "sigmoid" it is scored like any
        class and the post-processing ignores it), ``boxes`` float32 ``[B, A, 4]`` decoded xyxy input pixels (not
        clipped), ``default_boxes`` ``[A, 4]`` as given.
    """
    if activation not in SCORE_ACTIVATIONS:
        raise ValueError(f"activation={activation!r}: expected one of {SCORE_ACTIVATIONS}")
    logits = cls_logits.float()
    return {
        "scores": F.softmax(logits, dim=-1) if activation == "softmax" else torch.sigmoid(logits),
        "boxes": box_coder.decode(box_regression.float(), default_boxes),
        "default_boxes": default_boxes,
    }


def clip_boxes(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """xyxy ``boxes [..., 4]`` clamped to ``image_size = (H, W)``."""
    height, width = image_size
    # (..., 2 corners, xy) -> back to (..., 4) x1, y1, x2, y2
    return torch.stack([boxes[..., 0::2].clamp(0, width), boxes[..., 1::2].clamp(0, height)], dim=-1).flatten(-2)


def class_scores_and_boxes(scores: Tensor, boxes: Tensor, image_size: tuple[int, int],
                           clip: bool = True) -> tuple[Tensor, Tensor]:
    """Foreground scores ``[B, C-1, A]`` and boxes ``[B, A, 4]`` (clipped to ``image_size = (H, W)`` if
    ``clip``), from :func:`decode_predictions`' ``scores [B, A, C]`` and ``boxes [B, A, 4]``."""
    return scores[..., 1:].transpose(1, 2), clip_boxes(boxes, image_size) if clip else boxes


def postprocess(
    cls_logits: Tensor,
    box_regression: Tensor,
    default_boxes: Tensor,
    image_size: tuple[int, int],
    activation: str = "softmax",
    **thresholds: float,
) -> list[dict[str, Tensor]]:
    """Detections for a batch from the head's outputs: :func:`decode_predictions`, then :func:`select_detections`.

    Args: ``cls_logits [B, A, C]`` (class 0 background), ``box_regression [B, A, 4]``, ``default_boxes [A, 4]``
    xyxy pixels, ``image_size = (H, W)`` of the network input, ``activation`` as :func:`decode_predictions`;
    ``thresholds`` as :func:`select_detections`.
    """
    dense = decode_predictions(cls_logits, box_regression, default_boxes, activation)
    return select_detections(dense["scores"], dense["boxes"], image_size, **thresholds)


def select_detections(
    scores: Tensor,
    boxes: Tensor,
    image_size: tuple[int, int],
    *,
    score_thresh: float = DEFAULT_THRESHOLDS.score_thresh,
    nms_thresh: float = DEFAULT_THRESHOLDS.nms_thresh,
    topk_candidates: int = DEFAULT_THRESHOLDS.topk_candidates,
    detections_per_img: int = DEFAULT_THRESHOLDS.detections_per_img,
    clip_before_nms: bool = DEFAULT_THRESHOLDS.clip_before_nms,
) -> list[dict[str, Tensor]]:
    """Detections for a batch, in pixels of the network input, from per-default-box predictions.

    Args:
        scores: ``[B, A, C]`` class probabilities, class 0 is background.
        boxes: ``[B, A, 4]`` decoded xyxy pixels of the network input; clipped to ``image_size`` here.
        image_size: ``(H, W)`` of the network input.
        score_thresh, nms_thresh, topk_candidates, detections_per_img, clip_before_nms: see :class:`Thresholds`.

    Returns:
        One dict per image: ``boxes`` float ``[D, 4]`` xyxy, ``scores`` float ``[D]``, ``labels`` int64 ``[D]``
        in ``[1, C)``, sorted by decreasing score.
    """
    batch, num_anchors, num_classes = scores.shape
    scores, boxes = class_scores_and_boxes(scores, boxes, image_size, clip=clip_before_nms)

    # Per image and class, the best candidates above the threshold.
    k = min(topk_candidates, num_anchors)
    top_scores, top_index = scores.masked_fill(scores <= score_thresh, -1.0).topk(k, dim=-1)  # (B, C-1, k)
    keep = top_scores > score_thresh
    image_index = torch.arange(batch, device=scores.device)[:, None, None].expand_as(top_index)
    labels = torch.arange(1, num_classes, device=scores.device)[None, :, None].expand_as(top_index)
    image_index, labels, top_index, top_scores = image_index[keep], labels[keep], top_index[keep], top_scores[keep]
    top_boxes = boxes[image_index, top_index]

    groups = image_index * (num_classes - 1) + labels - 1  # non-decreasing: laid out by image, then class
    kept = grouped_nms(top_boxes, top_scores, groups, nms_thresh)  # sorted by decreasing score

    # Best `detections_per_img` per image: a stable sort by image keeps each image's score order.
    kept = kept[torch.sort(image_index[kept], stable=True).indices]
    kept_images = image_index[kept]
    counts = torch.bincount(kept_images, minlength=batch)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(kept.numel(), device=kept.device) - starts[kept_images]
    kept = kept[rank < detections_per_img]
    counts = counts.clamp(max=detections_per_img).tolist()
    top_boxes = top_boxes if clip_before_nms else clip_boxes(top_boxes, image_size)

    return [
        {"boxes": b, "scores": s, "labels": l}
        for b, s, l in zip(top_boxes[kept].split(counts), top_scores[kept].split(counts), labels[kept].split(counts))
    ]
