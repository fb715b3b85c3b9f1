"""ssd_zoo's SSD300-VGG16 and torchvision's, same weights: same detections on real photos, same losses.

This is what makes torchvision's published COCO weights mean the same inside ssd_zoo.
"""
from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import ssd300_vgg16 as torchvision_ssd300

import ssd_zoo
from ssd_zoo.convert import from_torchvision, to_torchvision


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    tv = torchvision_ssd300(weights=None, weights_backbone=None, num_classes=91)
    with torch.no_grad():
        # Random heads score every class about equally; scaled, scores spread out and boxes stay near their
        # default boxes, so the comparison below is about the algorithm, not about ties.
        for conv in tv.head.classification_head.module_list:
            conv.weight.mul_(0.05)
        for conv in tv.head.regression_head.module_list:
            conv.weight.mul_(0.01)
    ours = ssd_zoo.build("ssd300_vgg16", num_classes=91, anchors="coco")
    ours.load_state_dict(from_torchvision(tv.state_dict()))
    return tv, ours


def test_eval_detections_agree(models, sample_images) -> None:
    tv, ours = models
    with torch.no_grad():
        expected = tv.eval()(sample_images)
        found = ours.eval()(sample_images)
    for i, (e, f) in enumerate(zip(expected, found)):
        assert len(e["scores"]) == len(f["scores"]) > 150, f"image {i}"
        n = 150  # near-ties at the 200 cut are arbitrary
        assert torch.equal(e["labels"][:n], f["labels"][:n]), f"image {i}"
        torch.testing.assert_close(f["boxes"][:n], e["boxes"][:n], atol=1e-3, rtol=0)
        torch.testing.assert_close(f["scores"][:n], e["scores"][:n], rtol=1e-5, atol=0)


def test_training_losses_agree(models, sample_images) -> None:
    tv, ours = models
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


def test_to_torchvision_loads_strictly(models) -> None:
    tv, ours = models
    fresh = torchvision_ssd300(weights=None, weights_backbone=None, num_classes=91)
    fresh.load_state_dict(to_torchvision(ours.state_dict()), strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, tv.state_dict()[key]), key


def test_converter_reports_bad_keys(models) -> None:
    tv, _ = models
    state = dict(tv.state_dict())
    state.pop("backbone.scale_weight")
    state["something.else"] = torch.zeros(1)
    with pytest.raises(KeyError, match="backbone.scale_weight.*something.else"):
        from_torchvision(state)
