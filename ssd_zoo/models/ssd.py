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
Every ``state_dict()`` carries the model's record under ``"_record"`` (:meth:`SSD.record`: input size, default
boxes, normalisation, classes; stored by :mod:`ssd_zoo.models.record`), so that a saved model comes back as it
was trained, or not at all.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ssd_zoo.models.record import RECORD_FORMAT, RECORD_STATE_KEY, decode_record, encode_record
from ssd_zoo.ops.default_boxes import DefaultBoxGenerator, DefaultBoxSpec
from ssd_zoo.ops.loss import ssd_loss
from ssd_zoo.ops.postprocess import DEFAULT_THRESHOLDS, SCORE_ACTIVATIONS, Thresholds, decode_predictions, postprocess
from ssd_zoo.transform import SSDTransform, check_target_values


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _global_count(count: Tensor) -> Tensor:
    """The matched default boxes of the whole global batch (all processes), at least 1, per process."""
    total = count.to(torch.float32)
    dist.all_reduce(total)
    return total.clamp(min=1) / dist.get_world_size()


class SSD(nn.Module):
    """The Single Shot MultiBox Detector around injected parts.

    Args:
        backbone: ``[B, 3, S, S]`` -> list of feature maps; has ``out_channels``.
        head: feature maps -> ``(cls_logits [B, A, C], box_regression [B, A, 4])``.
        default_boxes: feature maps + input size -> ``[A, 4]`` xyxy pixels.
        transform: resize/normalise/batch, and map detections back to each image.
        num_classes: classes including background.
        categories: ``num_classes`` names, index 0 background (e.g. the weights' own), or None.
        iou_thresh: matching IoU (training).
        neg_pos_ratio: hard negatives per positive (training).
        score_thresh, nms_thresh, topk_candidates, detections_per_img, clip_before_nms: post-processing (eval),
            see :class:`ssd_zoo.ops.postprocess.Thresholds` (defaults: ``DEFAULT_THRESHOLDS``).
        score_activation: ``"softmax"`` (the paper's: classes compete, background included) or ``"sigmoid"``
            (each class scored on its own, as the TF Object Detection API's SSDs); see
            :func:`ssd_zoo.ops.postprocess.decode_predictions`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        default_boxes: DefaultBoxGenerator,
        transform: SSDTransform,
        num_classes: int,
        *,
        categories: Sequence[str] | None = None,
        iou_thresh: float = 0.5,
        neg_pos_ratio: int = 3,
        score_thresh: float = DEFAULT_THRESHOLDS.score_thresh,
        nms_thresh: float = DEFAULT_THRESHOLDS.nms_thresh,
        topk_candidates: int = DEFAULT_THRESHOLDS.topk_candidates,
        detections_per_img: int = DEFAULT_THRESHOLDS.detections_per_img,
        clip_before_nms: bool = DEFAULT_THRESHOLDS.clip_before_nms,
        score_activation: str = "softmax",
    ) -> None:
        super().__init__()
        if score_activation not in SCORE_ACTIVATIONS:
            raise ValueError(f"score_activation={score_activation!r}: expected one of {SCORE_ACTIVATIONS}")
        self.score_activation = score_activation
        self.backbone = backbone
        self.head = head
        self.default_boxes = default_boxes
        self.transform = transform
        self.num_classes = num_classes
        self.builder: dict[str, Any] | None = None  # {"name", "kwargs"}: how ssd_zoo.build made it, if it did
        self.categories = categories
        self.iou_thresh = iou_thresh
        self.neg_pos_ratio = neg_pos_ratio
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.topk_candidates = topk_candidates
        self.detections_per_img = detections_per_img
        self.clip_before_nms = clip_before_nms
        self._register_load_state_dict_pre_hook(self._check_record)
        # channels_last by default: oneDNN (CPU) and cuDNN (tensor cores) run convolutions fastest in NHWC, and
        # the head's flattening to (B, H*W*k, C) becomes a free view. Values are unchanged, only strides.
        self.to(memory_format=torch.channels_last)

    @property
    def input_size(self) -> int:
        return self.transform.size

    @property
    def categories(self) -> list[str] | None:
        """``num_classes`` class names, index 0 background, or None where unknown."""
        return self._categories

    @categories.setter
    def categories(self, names: Sequence[str] | None) -> None:
        if names is not None and len(names) != self.num_classes:
            raise ValueError(f"categories: expected {self.num_classes} names (background first), found {len(names)}")
        self._categories = None if names is None else [str(n) for n in names]
        self._write_record()

    @property
    def class_names(self) -> list[str] | None:
        """The same list as :attr:`categories` (one truth, two names): ``num_classes`` names, background first,
        saved in the model's record; what ``ssd-zoo detect``, the recipes and their pictures label boxes with."""
        return self.categories

    @class_names.setter
    def class_names(self, names: Sequence[str] | None) -> None:
        self.categories = names

    def remember_builder(self, name: str, kwargs: dict[str, Any]) -> None:
        """Record the registered builder and its keywords (:func:`ssd_zoo.build` calls this), less those that
        fetch backbone weights (the checkpoint brings all weights), over those recorded already for the same
        builder (a builder whose architecture comes from its weights file records it itself). Keywords that are not plain data (JSON)
        leave the builder unrecorded."""
        kwargs = {k: v for k, v in kwargs.items() if k not in ("pretrained", "pretrained_backbone", "backbone_weights")}
        if self.builder is not None and self.builder["name"] == name:  # what the builder itself recorded stays
            kwargs = {**self.builder["kwargs"], **kwargs}
        try:
            json.dumps(kwargs)
        except TypeError:
            self.builder = None
        else:
            self.builder = {"name": name, "kwargs": kwargs}
        self._write_record()

    def _write_record(self) -> None:
        """The record saved in every state_dict(), kept current (class names and builder are set after init)."""
        device = self._record.device if hasattr(self, RECORD_STATE_KEY) else None
        self.register_buffer(RECORD_STATE_KEY, encode_record(self.record()).to(device))

    # --- what a checkpoint must carry to be used correctly: in every state_dict(), as "_record" ---
    def record(self) -> dict[str, Any]:
        """The record saved with the weights: ``format``, ``input_size``, ``default_boxes`` (the
        :class:`DefaultBoxSpec` as a dict), ``mean``/``std`` (RGB, 0..1 scale), ``num_classes``, ``categories``,
        ``builder`` (``{"name", "kwargs"}`` of :func:`ssd_zoo.build`, or None), ``resize`` (``"stretch"`` or
        ``"letterbox"``), ``pad_fill`` (the letterbox colour, None: the mean), ``coordinates`` (where resized
        pixels sample the image, see :class:`~ssd_zoo.transform.SSDTransform`) and ``score_activation``."""
        return {"format": RECORD_FORMAT, "input_size": self.input_size, "default_boxes": self.default_boxes.spec.to_dict(),
                "mean": self.transform.mean.flatten().tolist(), "std": self.transform.std.flatten().tolist(),
                "num_classes": self.num_classes, "categories": self.categories, "builder": self.builder,
                "resize": self.transform.resize_mode, "pad_fill": self.transform.pad_fill,
                "coordinates": self.transform.coordinates, "score_activation": self.score_activation}

    def _check_record(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load pre-hook: a record that contradicts this model raises ValueError naming both; its class names
        are taken. A state dict without one (torchvision's or ssd.pytorch's, converted; ssd_zoo's before 0.2)
        loads as if it had this model's own: the builders choose default boxes from the layout, and whoever
        builds the model themselves has chosen them."""
        key = prefix + RECORD_STATE_KEY
        if key in state_dict:
            saved, own = decode_record(state_dict[key]), self.record()
            if saved.get("format") != RECORD_FORMAT:
                raise ValueError(f"state dict: {key!r} is not an ssd_zoo model record ({RECORD_FORMAT}), found "
                                 f"{str(saved)[:80]}")
            for name in ("input_size", "num_classes", "default_boxes", "mean", "std"):
                if saved[name] != own[name]:  # both come from record(): float32 buffers, plain lists
                    theirs = DefaultBoxSpec.from_dict(saved[name]).describe() if name == "default_boxes" else saved[name]
                    mine = self.default_boxes.spec.describe() if name == "default_boxes" else own[name]
                    raise ValueError(
                        f"state dict: the weights were trained with {name} {theirs}, but this model has {mine}; build "
                        "the model from the file (ssd_zoo.build(name, weights=path)) to get the weights' own")
            # Absent from records saved before the option: not known, not checked.
            for name in ("resize", "pad_fill", "coordinates", "score_activation"):
                if name in saved and saved[name] != own[name]:
                    raise ValueError(f"state dict: the weights were trained with {name}={saved[name]!r}, but this "
                                     f"model has {name}={own[name]!r}; build the model from the file "
                                     "(ssd_zoo.build(name, weights=path)) to get the weights' own")
            if saved.get("builder") is not None and self.builder is None:
                self.builder = saved["builder"]
            if saved.get("categories") is not None:
                self.categories = saved["categories"]  # rewrites the record, builder included
        state_dict[key] = self._record  # now this model's record, of its length

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
            ``scores``: ``[B, A, C]`` float32 class probabilities (softmax, or sigmoid per class: see
            ``score_activation``), index 0 background;
            ``boxes``: ``[B, A, 4]`` float32 decoded xyxy in pixels of the ``S x S`` model input, not clipped;
            ``default_boxes``: ``[A, 4]`` xyxy input pixels.
            To map boxes to an image of ``(H, W)`` pixels, multiply x by ``W / S`` and y by ``H / S``.
        """
        return decode_predictions(*self._network(self.transform(images).images), activation=self.score_activation)

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
                cls_logits, box_regression, anchors, *batch.targets, iou_thresh=self.iou_thresh,
                neg_pos_ratio=self.neg_pos_ratio, count_positives=_global_count if _distributed() else None,
                activation=self.score_activation,
            )
        detections = postprocess(cls_logits, box_regression, anchors, tuple(batch.images.shape[-2:]),
                                 activation=self.score_activation, **self.thresholds)
        return self.transform.postprocess(detections, batch.original_sizes)

    def extra_repr(self) -> str:
        """``repr``'s first line: classes, input size and, for an int8 copy made by ``ssd_zoo.quantize``, which
        backend made it and why (its ``quantized_with``)."""
        text = f"num_classes={self.num_classes}, input_size={self.input_size}"
        quantized_with = getattr(self, "quantized_with", None)
        return text + (f", quantized_with={quantized_with}" if quantized_with else "")

    @property
    def thresholds(self) -> dict[str, float]:
        """The post-processing settings, as keywords of :func:`~ssd_zoo.ops.postprocess.select_detections`."""
        return Thresholds(self.score_thresh, self.nms_thresh, self.topk_candidates, self.detections_per_img,
                          self.clip_before_nms).as_dict()
