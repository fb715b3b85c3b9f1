"""What ssd_zoo is measured and tested against: torchvision's SSD300 with the same weights, torchvision's network
pass, and the Pascal VOC evaluation one detection at a time.

One copy of each, imported by the benchmarks and by the tests (``from benchmarks.reference import ...``):

- :func:`paired_models`: torchvision's ``ssd300_vgg16`` and ssd_zoo's, same (random, converted) weights;
- :func:`torchvision_dense_predictions`: torchvision's SSD doing what :meth:`ssd_zoo.SSD.dense_predictions` does;
- :func:`voc_eval` / :func:`voc_class_aps`: per class, the devkit's algorithm as py-faster-rcnn's ``voc_eval``
  describes it, written here from that description: all detections of the class by decreasing score; for each,
  its image's ground truths of the class, the best IoU; above the threshold a difficult box is ignored, a free
  box is a true positive (and is claimed), a claimed box a false positive; else a false positive. Then the
  cumulative tp / fp give precision and recall, and :func:`voc_ap` the 11-point (VOC07) or area AP.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def paired_models(
    num_classes: int = 21, seed: int = 0, cls_factor: float = 0.05, reg_factor: float = 0.01
) -> tuple[nn.Module, nn.Module]:
    """torchvision's ``ssd300_vgg16`` and ssd_zoo's with the same (random, converted) weights, in eval mode.

    torchvision's random heads are scaled first: classification weights by ``cls_factor``, regression weights
    by ``reg_factor``. Random heads score every class about equally; scaled (the defaults), scores spread out
    and boxes stay near their default boxes, so comparisons are about the algorithm, not ties; 1.0 and 1.0 keep
    torchvision's own initialisation. Nothing is downloaded (``weights=None, weights_backbone=None``);
    ssd_zoo's model uses torchvision's default boxes (``anchors="coco"``).
    """
    import torchvision

    import ssd_zoo
    from ssd_zoo.weights.convert import from_torchvision

    torch.manual_seed(seed)
    tv = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes)
    with torch.no_grad():
        for conv in tv.head.classification_head.module_list:
            conv.weight.mul_(cls_factor)
        for conv in tv.head.regression_head.module_list:
            conv.weight.mul_(reg_factor)
    ours = ssd_zoo.build("ssd300_vgg16", num_classes=num_classes, anchors="coco")
    ours.load_state_dict(from_torchvision(tv.state_dict()))
    return tv.eval(), ours.eval()


def torchvision_dense_predictions(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """A torchvision SSD's counterpart of :meth:`ssd_zoo.SSD.dense_predictions`, the same work step by step.

    ``images``: ``[B, 3, S, S]`` in [0, 1], already at the model's input size ``S`` (so neither side resizes).
    Runs torchvision's own parts: ``transform.normalize``, ``backbone``, ``head``, ``anchor_generator`` and
    ``box_coder.decode_single`` + softmax, as its ``postprocess_detections`` decodes (here for the whole batch).
    Returns ``scores`` ``[B, A, C]`` softmax, ``boxes`` ``[B, A, 4]`` decoded xyxy input pixels (not clipped),
    ``default_boxes`` ``[A, 4]``.
    """
    from torchvision.models.detection.image_list import ImageList

    batch, _, height, width = images.shape
    normalised = model.transform.normalize(images)
    features = list(model.backbone(normalised).values())
    head = model.head(features)
    anchors = model.anchor_generator(ImageList(normalised, [(height, width)] * batch), features)
    regression = head["bbox_regression"]
    boxes = model.box_coder.decode_single(regression.reshape(-1, 4), torch.cat(anchors)).view(regression.shape)
    return {"scores": F.softmax(head["cls_logits"], dim=-1), "boxes": boxes, "default_boxes": anchors[0]}


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """AP from a precision/recall curve: VOC07's 11-point interpolation, or the area under the envelope."""
    if use_07_metric:  # the mean, over recall levels 0, 0.1, ..., 1, of the best precision at that recall or more
        return float(sum((precision[recall >= t].max() if (recall >= t).any() else 0.0) / 11.0
                         for t in np.arange(0.0, 1.1, 0.1)))
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([0.0], precision, [0.0]))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the monotone envelope, from the right
    steps = np.flatnonzero(recall[1:] != recall[:-1])  # where recall changes
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def voc_eval(
    detections: tuple[np.ndarray, np.ndarray, np.ndarray],
    ground_truth: Mapping[int, tuple[np.ndarray, np.ndarray]],
    iou_thresh: float = 0.5,
    use_07_metric: bool = True,
    pixel_inclusive: bool = True,
) -> float:
    """One class's AP, one detection at a time.

    Args:
        detections: ``(image_ids int [D], scores [D], boxes [D, 4] xyxy)``, every detection of the class.
        ground_truth: image id -> ``(boxes [G, 4] xyxy, difficult bool [G])`` of the class (missing: none).
        iou_thresh: a detection matches a box with IoU strictly above this.
        use_07_metric: 11-point AP (VOC07), else the area AP (VOC2010 on).
        pixel_inclusive: the devkit's ``+1`` in widths and heights (boxes are inclusive pixel indices).

    Returns the AP, or NaN when the class has no non-difficult box (the devkit would divide by zero).
    """
    one = 1.0 if pixel_inclusive else 0.0
    image_ids, scores, boxes = detections
    npos = sum(int((~difficult).sum()) for _, difficult in ground_truth.values())
    if npos == 0:
        return float("nan")
    claimed = {i: np.zeros(len(difficult), bool) for i, (_, difficult) in ground_truth.items()}
    empty = (np.zeros((0, 4)), np.zeros(0, bool))
    order = np.argsort(-scores, kind="stable")  # ties keep their input order, as VOCEvaluator does
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for d, k in enumerate(order):
        gt_boxes, difficult = ground_truth.get(int(image_ids[k]), empty)
        box = boxes[k]
        best = -np.inf
        if gt_boxes.size:
            iw = np.maximum(np.minimum(gt_boxes[:, 2], box[2]) - np.maximum(gt_boxes[:, 0], box[0]) + one, 0.0)
            ih = np.maximum(np.minimum(gt_boxes[:, 3], box[3]) - np.maximum(gt_boxes[:, 1], box[1]) + one, 0.0)
            inter = iw * ih
            union = ((box[2] - box[0] + one) * (box[3] - box[1] + one)
                     + (gt_boxes[:, 2] - gt_boxes[:, 0] + one) * (gt_boxes[:, 3] - gt_boxes[:, 1] + one) - inter)
            with np.errstate(divide="ignore", invalid="ignore"):  # zero-area boxes without the +1: NaN, no match
                overlaps = inter / union
            best, j = overlaps.max(), overlaps.argmax()
        if best > iou_thresh:
            if not difficult[j]:
                if not claimed[int(image_ids[k])][j]:
                    tp[d] = 1.0
                    claimed[int(image_ids[k])][j] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision, use_07_metric)


def voc_class_aps(
    predictions: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    num_classes: int,
    iou_thresh: float = 0.5,
    use_07_metric: bool = True,
    pixel_inclusive: bool = True,
) -> dict[int, float]:
    """Per class ``1 .. num_classes-1``, :func:`voc_eval`'s AP (NaN: no non-difficult ground truth).

    ``predictions``: per image ``boxes [D, 4]`` xyxy, ``scores [D]``, ``labels [D]``; ``targets``: per image
    ``boxes [G, 4]``, ``labels [G]`` and optionally ``difficult`` bool ``[G]`` (default: none difficult).
    Detections and ground truth are split by class once (as the devkit reads one detection file per class);
    the work per detection is :func:`voc_eval`'s loop. Boxes are compared in float64.
    """
    image_ids = np.concatenate([np.full(len(p["scores"]), i) for i, p in enumerate(predictions)] or [np.zeros(0)])
    scores = np.concatenate([p["scores"].double().numpy() for p in predictions] or [np.zeros(0)])
    boxes = np.concatenate([p["boxes"].double().numpy().reshape(-1, 4) for p in predictions] or [np.zeros((0, 4))])
    labels = np.concatenate([p["labels"].numpy() for p in predictions] or [np.zeros(0, np.int64)])
    ground_truth: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {c: {} for c in range(1, num_classes)}
    for i, t in enumerate(targets):
        gt_labels, gt_boxes = t["labels"].numpy(), t["boxes"].double().numpy().reshape(-1, 4)
        difficult = t["difficult"].numpy().astype(bool) if "difficult" in t else np.zeros(len(gt_labels), bool)
        for c in np.unique(gt_labels):
            mask = gt_labels == c
            ground_truth[int(c)][i] = (gt_boxes[mask], difficult[mask])
    aps = {}
    for c in range(1, num_classes):
        mask = labels == c
        aps[c] = voc_eval((image_ids[mask], scores[mask], boxes[mask]), ground_truth[c],
                          iou_thresh, use_07_metric, pixel_inclusive)
    return aps
