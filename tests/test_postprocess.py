"""Post-processing: thresholds, per-class NMS, caps, and the batched path against one image at a time."""
from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from ssd_zoo.ops.box_coder import decode
from ssd_zoo.ops.postprocess import postprocess

ANCHORS = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 70, 70], [80, 0, 100, 30]])


def logits_for(probabilities: list[list[float]]) -> torch.Tensor:
    return torch.tensor(probabilities).log()[None]


def test_nms_suppresses_within_a_class_only() -> None:
    # Anchors 0 and 1 overlap (IoU 0.68): in class 1 the weaker is suppressed; class 2 keeps its own box.
    logits = logits_for([[0.0999, 0.9, 0.0001], [0.2, 0.6, 0.2], [0.9, 0.05, 0.05], [0.97, 0.01, 0.02]])
    dets = postprocess(logits, torch.zeros(1, 4, 4), ANCHORS, (100, 100), score_thresh=0.1)[0]
    assert dets["labels"].tolist() == [1, 2]
    torch.testing.assert_close(dets["boxes"], ANCHORS[[0, 1]])
    torch.testing.assert_close(dets["scores"], torch.tensor([0.9, 0.2]), rtol=1e-5, atol=1e-6)


def test_score_threshold_clipping_and_cap() -> None:
    logits = logits_for([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.1, 0.9, 0.0]])
    regression = torch.zeros(1, 4, 4)
    regression[0, 3, 2] = 5.0  # widen the last box far past the image: it must be clipped
    dets = postprocess(logits, regression, ANCHORS, (60, 95), score_thresh=0.6, detections_per_img=1)[0]
    assert dets["labels"].tolist() == [1] and dets["scores"].tolist() == [torch.tensor(0.9).item()]
    centre, half_width = 90.0, 10.0 * torch.tensor(1.0).exp().item()
    torch.testing.assert_close(dets["boxes"][0], torch.tensor([centre - half_width, 0.0, 95.0, 30.0]))


def test_no_detections() -> None:
    logits = logits_for([[1.0, 0.0, 0.0]] * 4)
    dets = postprocess(logits, torch.zeros(1, 4, 4), ANCHORS, (100, 100))
    assert dets[0]["boxes"].shape == (0, 4) and dets[0]["labels"].dtype == torch.int64


def per_image_reference(logits, regression, anchors, size, score_thresh, nms_thresh, topk, per_img):
    """torchvision's SSD.postprocess_detections loop, one image and one class at a time."""
    out = []
    for lg, rg in zip(logits, regression):
        scores = lg.softmax(-1)
        boxes = decode(rg, anchors)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, size[1])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, size[0])
        all_b, all_s, all_l = [], [], []
        for label in range(1, lg.shape[-1]):
            s = scores[:, label]
            keep = s > score_thresh
            s, b = s[keep], boxes[keep]
            s, idx = s.topk(min(topk, s.numel()))
            all_b.append(b[idx]), all_s.append(s), all_l.append(torch.full_like(idx, label))
        b, s, l = torch.cat(all_b), torch.cat(all_s), torch.cat(all_l)
        keep = batched_nms(b, s, l, nms_thresh)[:per_img]
        out.append({"boxes": b[keep], "scores": s[keep], "labels": l[keep]})
    return out


def test_batched_matches_per_image_loop() -> None:
    g = torch.Generator().manual_seed(0)
    anchors = torch.rand(500, 2, generator=g) * 200
    anchors = torch.cat([anchors, anchors + 10 + torch.rand(500, 2, generator=g) * 60], 1)
    logits = torch.randn(3, 500, 6, generator=g) * 3
    regression = torch.randn(3, 500, 4, generator=g) * 0.5
    args = (logits, regression, anchors, (240, 250))
    ours = postprocess(*args, score_thresh=0.05, nms_thresh=0.45, topk_candidates=40, detections_per_img=30)
    ref = per_image_reference(*args, 0.05, 0.45, 40, 30)
    for a, b in zip(ours, ref):
        assert a["labels"].tolist() == b["labels"].tolist()
        torch.testing.assert_close(a["boxes"], b["boxes"])
        torch.testing.assert_close(a["scores"], b["scores"])


def test_clip_before_nms_decides_which_border_boxes_overlap() -> None:
    """Two boxes past the left edge: IoU 0.43 as decoded, 0.56 once clipped. torchvision clips before NMS (one
    survives NMS 0.5); ssd.pytorch, lufficc, qfgaohao and NVIDIA do not (both survive). Detections are clipped
    either way, and the exported graph's NMS (padded_detections) follows the same setting."""
    from ssd_zoo.deploy.export import padded_detections
    from ssd_zoo.ops.postprocess import select_detections

    boxes = torch.tensor([[[-50.0, 0, 50, 100], [-10, 0, 90, 100]]])
    scores = torch.tensor([[[0.1, 0.9], [0.2, 0.8]]])  # [B, A, C]: background, one class
    for clip, survivors in ((True, 1), (False, 2)):
        (det,) = select_detections(scores, boxes, (100, 100), nms_thresh=0.5, clip_before_nms=clip)
        assert len(det["boxes"]) == survivors and det["boxes"][:, 0].min() == 0
        count, padded, _, _ = padded_detections(scores, boxes, (100, 100), nms_thresh=0.5, clip_before_nms=clip)
        assert int(count[0]) == survivors and torch.equal(padded[0, :survivors], det["boxes"])
