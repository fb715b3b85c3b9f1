"""SSD: transform -> backbone -> head -> default boxes -> loss (training) | post-processing (eval).

The I/O contract is torchvision's detection contract:
- ``images``: a list of float ``[3, H, W]`` tensors in [0, 1], any sizes (or one ``[B, 3, H, W]`` tensor);
- ``targets`` (training): one dict per image, ``boxes`` float ``[N, 4]`` xyxy in that image's pixels and
  ``labels`` int64 ``[N]`` in ``[1, num_classes)`` (0 is background); ``N`` may be 0;
- training returns ``{"bbox_regression": Tensor[], "classification": Tensor[]}``;
- eval returns one dict per image: ``boxes`` ``[D, 4]`` xyxy in that image's own pixels, ``scores`` ``[D]``,
  ``labels`` int64 ``[D]``.

:meth:`SSD.dense_predictions` is the network pass every other place builds on (post-processing, ONNX export,
benchmarks, your own decoding, test-time augmentation or tiling): per default box, before thresholds and NMS.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..ops.default_boxes import DefaultBoxGenerator
from ..ops.loss import ssd_loss
from ..ops.postprocess import decode_predictions, select_detections
from ..transform import SSDTransform, check_target_values


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
            see :func:`ssd_zoo.ops.postprocess.select_detections`.
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

    def _network(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The one network pass, on a normalised batch ``[B, 3, S, S]``: ``(cls_logits [B, A, C],
        box_regression [B, A, 4], default_boxes [A, 4] xyxy input pixels)``."""
        features = self.backbone(images)
        cls_logits, box_regression = self.head(features)
        return cls_logits, box_regression, self.default_boxes(features, tuple(images.shape[-2:]))

    def dense_predictions(self, images: list[Tensor] | Tensor) -> dict[str, Tensor]:
        """Per default box, before thresholds and NMS, for the same ``images`` that :meth:`forward` takes.

        Call it in eval mode (BatchNorm's running statistics), e.g. under ``torch.inference_mode()``.
        A ``[B, 3, S, S]`` tensor at the model's input size is used as it is (no resizing).

        Returns:
            ``scores``: ``[B, A, C]`` float32 softmax class probabilities, index 0 background;
            ``boxes``: ``[B, A, 4]`` float32 decoded xyxy in pixels of the ``S x S`` model input, not clipped;
            ``default_boxes``: ``[A, 4]`` xyxy input pixels.
            To map boxes to an image of ``(H, W)`` pixels, multiply x by ``W / S`` and y by ``H / S``.
        """
        return decode_predictions(*self._network(self.transform(images).images))

    def forward(
        self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError("SSD in training mode: expected targets (one dict per image), found None")
        batch = self.transform(images, targets if self.training else None)
        cls_logits, box_regression, anchors = self._network(batch.images)
        if self.training:
            check_target_values(batch.targets, self.num_classes)
            return ssd_loss(
                cls_logits, box_regression, anchors, *batch.targets,
                iou_thresh=self.iou_thresh, neg_pos_ratio=self.neg_pos_ratio,
            )
        dense = decode_predictions(cls_logits, box_regression, anchors)
        detections = select_detections(
            dense["scores"], dense["boxes"], tuple(batch.images.shape[-2:]), **self.thresholds
        )
        return self.transform.postprocess(detections, batch.original_sizes)

    @property
    def thresholds(self) -> dict[str, float]:
        """The post-processing settings, as keywords of :func:`~ssd_zoo.ops.postprocess.select_detections`."""
        return {"score_thresh": self.score_thresh, "nms_thresh": self.nms_thresh,
                "topk_candidates": self.topk_candidates, "detections_per_img": self.detections_per_img}
