"""The batched SSD loss against a plain per-image reference written here (torchvision's formulation)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssd_zoo.ops.box_coder import encode
from ssd_zoo.ops.loss import ssd_loss
from ssd_zoo.ops.matcher import box_iou


def reference_loss(cls_logits, box_regression, anchors, targets, iou_thresh=0.5, neg_pos_ratio=3):
    """One image at a time, with boolean indexing, as torchvision's SSD.compute_loss reads."""
    box_losses, cls_losses, num_pos = [], [], 0
    for logits, regression, target in zip(cls_logits, box_regression, targets):
        matched = torch.full((anchors.shape[0],), -1)
        if len(target["boxes"]):
            iou = box_iou(target["boxes"][None], anchors)[0]  # (G, A)
            best, idx = iou.max(0)
            matched = torch.where(best >= iou_thresh, idx, -1)
            for g, a in enumerate(iou.argmax(1).tolist()):
                matched[a] = g
        pos = matched >= 0
        num_pos += int(pos.sum())
        targets_reg = encode(target["boxes"][matched[pos]], anchors[pos])
        box_losses.append(F.smooth_l1_loss(regression[pos], targets_reg, reduction="sum"))
        labels = torch.zeros(anchors.shape[0], dtype=torch.int64)
        labels[pos] = target["labels"][matched[pos]]
        ce = F.cross_entropy(logits, labels, reduction="none")
        neg_ce = ce.clone()
        neg_ce[pos] = -float("inf")
        hardest = neg_ce.argsort(descending=True)[: neg_pos_ratio * int(pos.sum())]
        cls_losses.append(ce[pos].sum() + ce[hardest].sum())
    n = max(1, num_pos)
    return {"bbox_regression": sum(box_losses) / n, "classification": sum(cls_losses) / n}


def random_case(seed: int, counts: list[int], num_classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.rand(300, 2, generator=g) * 80
    anchors = torch.cat([anchors, anchors + 5 + torch.rand(300, 2, generator=g) * 20], 1)
    targets = []
    for n in counts:
        xy = torch.rand(n, 2, generator=g) * 70
        targets.append({"boxes": torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=g) * 20], 1),
                        "labels": torch.randint(1, num_classes, (n,), generator=g)})
    logits = torch.randn(len(counts), 300, num_classes, generator=g)
    regression = torch.randn(len(counts), 300, 4, generator=g)
    return logits, regression, anchors, targets


def padded(targets):
    g = max(len(t["boxes"]) for t in targets)
    boxes = torch.zeros(len(targets), g, 4)
    labels = torch.zeros(len(targets), g, dtype=torch.int64)
    valid = torch.zeros(len(targets), g, dtype=torch.bool)
    for i, t in enumerate(targets):
        n = len(t["boxes"])
        boxes[i, :n], labels[i, :n], valid[i, :n] = t["boxes"], t["labels"], True
    return boxes, labels, valid


def test_loss_matches_per_image_reference() -> None:
    logits, regression, anchors, targets = random_case(0, [3, 0, 7, 1])
    ours = ssd_loss(logits, regression, anchors, *padded(targets))
    ref = reference_loss(logits, regression, anchors, targets)
    for key in ref:
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-5, atol=1e-6)


def test_no_positives_gives_zero_loss_not_nan() -> None:
    logits, regression, anchors, targets = random_case(1, [0, 0])
    losses = ssd_loss(logits.requires_grad_(), regression.requires_grad_(), anchors, *padded(targets))
    assert losses["bbox_regression"] == 0 and losses["classification"] == 0
    sum(losses.values()).backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(regression.grad).all()


def test_gradients_are_finite_with_padding() -> None:
    logits, regression, anchors, targets = random_case(2, [5, 1])
    logits.requires_grad_(), regression.requires_grad_()
    sum(ssd_loss(logits, regression, anchors, *padded(targets)).values()).backward()
    assert torch.isfinite(regression.grad).all() and regression.grad.abs().sum() > 0


def test_one_class_dataset() -> None:
    logits, regression, anchors, targets = random_case(3, [2, 4], num_classes=2)
    ours = ssd_loss(logits, regression, anchors, *padded(targets))
    ref = reference_loss(logits, regression, anchors, targets)
    torch.testing.assert_close(ours["classification"], ref["classification"], rtol=1e-5, atol=1e-6)
