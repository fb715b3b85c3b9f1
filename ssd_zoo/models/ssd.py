"""SSD: transform -> backbone -> head -> default boxes -> loss (training) | post-processing (eval).

The I/O contract is torchvision's detection contract:
- ``images``: a list of float ``[3, H, W]`` tensors in [0, 1], any sizes (or one ``[B, 3, H, W]`` tensor);
- ``targets`` (training): one dict per image, ``boxes`` float ``[N, 4]`` xyxy in that image's pixels and
  ``labels`` int64 ``[N]`` in ``[1, num_classes)`` (0 is background); ``N`` may be 0;
- training returns ``{"bbox_regression": Tensor[], "classification": Tensor[]}``;
- eval returns one dict per image: ``boxes`` ``[D, 4]`` xyxy in that image's own pixels, ``scores`` ``[D]``,
  ``labels`` int64 ``[D]``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..ops.default_boxes import DefaultBoxGenerator
from ..ops.loss import ssd_loss
from ..ops.postprocess import postprocess
from ..transform import SSDTransform


class SSD(nn.Module):
    """The Single Shot MultiBox Detector around injected parts.

    Args:
        backbone: ``[B, 3, S, S]`` -> list of feature maps; has ``out_channels``.
        head: feature maps -> ``(cls_logits [B, A, C], box_regression [B, A, 4])``.
        default_boxes: feature maps + input size -> ``[A, 4]`` xyxy pixels.
        transform: resize/normalise/batch, and map detections back to each image.
        num_classes: classes including background.
        iou_thresh: matching IoU (training).
        neg_pos_ratio: hard negatives per positive (training).
        score_thresh, nms_thresh, topk_candidates, detections_per_img: post-processing (eval),
            see :func:`ssd_zoo.ops.postprocess.postprocess`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        default_boxes: DefaultBoxGenerator,
        transform: SSDTransform,
        num_classes: int,
        *,
        iou_thresh: float = 0.5,
        neg_pos_ratio: int = 3,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        topk_candidates: int = 400,
        detections_per_img: int = 200,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.default_boxes = default_boxes
        self.transform = transform
        self.num_classes = num_classes
        self.iou_thresh = iou_thresh
        self.neg_pos_ratio = neg_pos_ratio
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.topk_candidates = topk_candidates
        self.detections_per_img = detections_per_img
        # channels_last by default: oneDNN (CPU) and cuDNN (tensor cores) run convolutions fastest in NHWC, and
        # the head's flattening to (B, H*W*k, C) becomes a free view. Values are unchanged, only strides.
        self.to(memory_format=torch.channels_last)

    @property
    def input_size(self) -> int:
        return self.transform.size

    def forward(
        self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError("SSD in training mode: expected targets (one dict per image), found None")
        batch = self.transform(images, targets if self.training else None, self.num_classes)
        features = self.backbone(batch.images)
        cls_logits, box_regression = self.head(features)
        anchors = self.default_boxes(features, tuple(batch.images.shape[-2:]))
        if self.training:
            return ssd_loss(
                cls_logits, box_regression, anchors, batch.gt_boxes, batch.gt_labels, batch.gt_valid,
                iou_thresh=self.iou_thresh, neg_pos_ratio=self.neg_pos_ratio,
            )
        detections = postprocess(
            cls_logits, box_regression, anchors, tuple(batch.images.shape[-2:]),
            score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
            topk_candidates=self.topk_candidates, detections_per_img=self.detections_per_img,
        )
        return self.transform.postprocess(detections, batch.original_sizes)
