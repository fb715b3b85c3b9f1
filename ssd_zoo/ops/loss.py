"""The SSD training objective (SSD paper, eq. 1): localisation + confidence, with hard-negative mining.

``L = (L_loc + L_conf) / N``, N the batch's number of matched default boxes (at least 1; under
``torch.distributed``, the global batch's, see ``count_positives``):
- ``L_loc``: smooth-L1 between the predicted and the encoded ground-truth offsets, positives only;
- ``L_conf``: cross-entropy on the positives plus, per image, the ``neg_pos_ratio``-times-as-many
  background boxes that the network gets most wrong (hard negatives).

For a head scored with a sigmoid per class (``activation="sigmoid"``: the TF Object Detection API's SSDs),
``L_conf`` is instead that API's ``weighted_sigmoid`` loss: per default box, the binary cross-entropy of every
class logit against the one-hot target, background column included, summed over the classes; the hard
negatives are mined on it as above (the API's ``hard_example_miner`` with ``max_negatives_per_positive: 3``,
``loss_type: CLASSIFICATION``, in its SSD configs), so a graph fine-tunes with the loss it was trained with.
Everything runs on the whole batch: no loop over images, no host synchronisation.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ssd_zoo.ops import box_coder
from ssd_zoo.ops.matcher import match


def hard_negatives(cls_loss: Tensor, positive: Tensor, neg_pos_ratio: int) -> Tensor:
    """``[B, A]`` bool: per image, the ``neg_pos_ratio * num_positive`` negatives of highest loss.

    ``cls_loss`` ``[B, A]`` per-default-box cross-entropy; ``positive`` ``[B, A]`` bool.
    """
    num_negative = neg_pos_ratio * positive.sum(dim=1, keepdim=True)
    negative_loss = cls_loss.detach().masked_fill(positive, -float("inf"))
    order = negative_loss.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)  # rank of each default box by loss, 0 = hardest
    return rank < num_negative


def ssd_loss(
    cls_logits: Tensor,
    box_regression: Tensor,
    default_boxes: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_valid: Tensor,
    *,
    iou_thresh: float = 0.5,
    neg_pos_ratio: int = 3,
    count_positives: Callable[[Tensor], Tensor] | None = None,
    activation: str = "softmax",
) -> dict[str, Tensor]:
    """The SSD loss for a batch.

    Args:
        cls_logits: ``[B, A, C]`` class scores, C including background (class 0).
        box_regression: ``[B, A, 4]`` predicted offsets (see :mod:`ssd_zoo.ops.box_coder`).
        default_boxes: ``[A, 4]`` xyxy pixels of the network input.
        gt_boxes: ``[B, G, 4]`` xyxy pixels of the network input, padded.
        gt_labels: ``[B, G]`` int64 in ``[1, C)``, padded.
        gt_valid: ``[B, G]`` bool, False on padding.
        count_positives: this batch's number of matched default boxes (int64 ``[]``) -> the N to divide by;
            default ``max(1, count)``. Data-parallel training passes the global count over processes:
            ``max(1, sum) / world_size``, so that averaging the processes' gradients (DDP) gives one
            process's gradient on the whole global batch.
        activation: ``"softmax"`` (cross-entropy over the classes) or ``"sigmoid"`` (binary cross-entropy per
            class, summed: see the module docstring); the scoring the model's post-processing uses.

    Returns:
        ``{"bbox_regression": Tensor[], "classification": Tensor[]}``, each already divided by N.
    """
    if gt_boxes.shape[1] == 0:  # no object in the whole batch: one padding row keeps the gathers well-formed
        batch = gt_boxes.shape[0]
        gt_boxes, gt_labels = gt_boxes.new_zeros(batch, 1, 4), gt_labels.new_zeros(batch, 1)
        gt_valid = gt_valid.new_zeros(batch, 1)
    matches = match(gt_boxes, gt_valid, default_boxes, iou_thresh)  # (B, A)
    positive = matches >= 0
    index = matches.clamp(min=0)
    matched_boxes = torch.gather(gt_boxes, 1, index[..., None].expand(-1, -1, 4))  # (B, A, 4)
    # Background boxes are coded against themselves (target 0) so no log(0) can reach the gradient.
    matched_boxes = torch.where(positive[..., None], matched_boxes, default_boxes)
    targets = box_coder.encode(matched_boxes, default_boxes)
    box_loss = F.smooth_l1_loss(box_regression, targets.to(box_regression.dtype), reduction="none").sum(-1)

    labels = torch.gather(gt_labels, 1, index).masked_fill(~positive, 0)  # (B, A)
    if activation == "softmax":
        cls_loss = F.cross_entropy(cls_logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
    elif activation == "sigmoid":
        one_hot = F.one_hot(labels, cls_logits.shape[-1]).to(cls_logits.dtype)  # (B, A, C), background column too
        cls_loss = F.binary_cross_entropy_with_logits(cls_logits, one_hot, reduction="none").sum(-1)
    else:
        raise ValueError(f"ssd_loss: activation={activation!r}, expected 'softmax' or 'sigmoid'")
    selected = positive | hard_negatives(cls_loss, positive, neg_pos_ratio)

    num_positive = positive.sum()
    num_positive = num_positive.clamp(min=1) if count_positives is None else count_positives(num_positive)
    return {
        "bbox_regression": torch.where(positive, box_loss, 0.0).sum() / num_positive,
        "classification": torch.where(selected, cls_loss, 0.0).sum() / num_positive,
    }
