"""ssd_zoo's SSD300-VGG16 and torchvision's, same weights: same detections on real photos, same losses.

This is what makes torchvision's published COCO weights mean the same inside ssd_zoo.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torchvision.models.detection import ssd300_vgg16 as torchvision_ssd300

from helpers import SCORE_RTOL, at_the_cut

from benchmarks.reference import paired_models
from ssd_zoo.weights.convert import from_torchvision, to_torchvision

# Head weight factors (classification, regression) and how closely boxes agree, in pixels.
# "scaled": random heads score every class about equally; scaled, scores spread out and boxes stay near their
# default boxes, so the comparison is about the algorithm, not about ties. "unscaled": torchvision's own
# initialisation; the regression moves boxes far from their default boxes (many are clipped at the image
# border) and scores crowd towards 1. exp() of the larger regression outputs turns the ~1e-6 relative
# differences of two float32 networks into up to ~2e-3 px on boxes as large as the 500 px photo.
HEADS = {"scaled": (0.05, 0.01, 1e-3), "unscaled": (1.0, 1.0, 1e-2)}


@pytest.fixture(scope="module", params=list(HEADS))
def models(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.nn.Module, float]:
    """(torchvision's model, ours with its weights, box tolerance in pixels) for one head scaling."""
    cls_factor, reg_factor, box_atol = HEADS[request.param]
    tv, ours = paired_models(num_classes=91, cls_factor=cls_factor, reg_factor=reg_factor)
    return tv, ours, box_atol


def first_near_tie(scores: Tensor) -> int:
    """Index of the first of two consecutive scores (``[D]``, decreasing) that may swap places: how long a
    prefix two implementations must give in the same order."""
    near = (scores[:-1] - scores[1:]) <= 2 * SCORE_RTOL * scores[1:]
    return int(near.nonzero()[0]) if near.any() else len(scores)


def agreeing_pairs(a: dict[str, Tensor], b: dict[str, Tensor], box_atol: float) -> Tensor:
    """``[len(a), len(b)]`` bool: detection i of ``a`` and j of ``b`` are the same one (same label, box within
    ``box_atol`` px, score within ``SCORE_RTOL``). After NMS one label has no two boxes that close, so a
    detection has at most one partner."""
    same_label = a["labels"][:, None] == b["labels"][None, :]
    close_boxes = (a["boxes"][:, None] - b["boxes"][None, :]).abs().amax(-1) <= box_atol
    close_scores = (a["scores"][:, None] - b["scores"][None, :]).abs() <= SCORE_RTOL * a["scores"][:, None]
    return same_label & close_boxes & close_scores


def test_eval_detections_agree(models, sample_images) -> None:
    tv, ours, box_atol = models
    with torch.no_grad():
        expected = tv.eval()(sample_images)
        found = ours.eval()(sample_images)
    limit = ours.detections_per_img
    for i, (e, f) in enumerate(zip(expected, found)):
        assert len(e["scores"]) == len(f["scores"]) > 150, f"image {i}"
        # All scores, best first: equal where two detections swapped places too (their scores are equal then).
        torch.testing.assert_close(f["scores"], e["scores"], rtol=SCORE_RTOL, atol=0, msg=lambda m: f"image {i}: {m}")
        # The same detections in the same order, up to the first two scores that may come either way.
        n = min(first_near_tie(e["scores"]), first_near_tie(f["scores"]))
        assert torch.equal(e["labels"][:n], f["labels"][:n]), f"image {i}, first {n}"
        torch.testing.assert_close(f["boxes"][:n], e["boxes"][:n], atol=box_atol, rtol=0,
                                   msg=lambda m: f"image {i}: {m}")
        # Then all of them as sets: every detection has exactly one partner in the other list, but those
        # tying with the last one kept (which of them made the cut is arbitrary).
        pairs = agreeing_pairs(e, f, box_atol)
        for name, det, partners, other in (("torchvision", e, pairs, "ours"), ("ours", f, pairs.T, "torchvision")):
            lonely = ((partners.sum(1) != 1) & ~at_the_cut(det["scores"], limit)).nonzero().flatten()
            if len(lonely):
                k = int(lonely[0])
                pytest.fail(f"image {i}: {name}'s detection {k} (label {int(det['labels'][k])}, score "
                            f"{float(det['scores'][k]):.7f}, box {det['boxes'][k].tolist()}) has "
                            f"{int(partners[k].sum())} partners in {other}' list, expected 1; "
                            f"{len(lonely)} detections without exactly one")


def test_training_losses_agree(models, sample_images) -> None:
    tv, ours, _ = models
    images = sample_images[:3]
    h0, w0 = images[0].shape[-2:]
    h1, w1 = images[1].shape[-2:]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, w0 * 0.6, h0 * 0.9], [w0 * 0.5, 5.0, w0 - 1.0, h0 * 0.4]]),
         "labels": torch.tensor([1, 18])},
        {"boxes": torch.tensor([[0.3 * w1, 0.3 * h1, 0.5 * w1, 0.45 * h1]]), "labels": torch.tensor([3])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # an image with no objects
    ]
    torch.manual_seed(1)
    expected = tv.train()(images, targets)
    found = ours.train()(images, targets)
    for key in ("bbox_regression", "classification"):
        torch.testing.assert_close(found[key], expected[key], rtol=1e-5, atol=0)


@pytest.mark.parametrize("models", ["scaled"], indirect=True)  # the head scaling does not matter here
def test_to_torchvision_loads_strictly(models) -> None:
    tv, ours, _ = models
    fresh = torchvision_ssd300(weights=None, weights_backbone=None, num_classes=91)
    fresh.load_state_dict(to_torchvision(ours.state_dict()), strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, tv.state_dict()[key]), key


@pytest.mark.parametrize("models", ["scaled"], indirect=True)  # the head scaling does not matter here
def test_converter_reports_bad_keys(models) -> None:
    tv, _, _ = models
    state = dict(tv.state_dict())
    state.pop("backbone.scale_weight")
    state["something.else"] = torch.zeros(1)
    with pytest.raises(KeyError, match="backbone.scale_weight.*something.else"):
        from_torchvision(state)
