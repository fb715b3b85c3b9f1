"""lufficc/SSD's VGG16 SSD300/SSD512: files in its layout load through ssd_zoo and predict exactly as its code.

The checkpoints are built here in lufficc's key layout and shapes (``CheckPointer`` saves ``{"model": ...}``),
with random weights scaled to keep activations O(1); the reference forward pass, prior boxes and decoding are
re-implemented with plain ops in :mod:`publisher_reference` (no ssd_zoo), following lufficc's code.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from publisher_reference import (
    head, l2norm_lufficc, predictions, priors, random_state, run_vgg, vgg_extras, vgg_shapes,
)

import ssd_zoo
from ssd_zoo.weights import convert
from ssd_zoo.weights.publishers import lufficc

PIXEL_MEAN = torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)  # INPUT.PIXEL_MEAN, RGB
# MODEL.PRIORS of configs/vgg_ssd{300,512}_{voc0712,coco_trainval35k}.yaml (and config/defaults.py), as at lufficc/SSD
# accc3109 (the README listing the release-1.2 files).
PRIORS = {
    (300, "voc"): dict(feature_maps=[38, 19, 10, 5, 3, 1], strides=[8, 16, 32, 64, 100, 300],
                       min_sizes=[30, 60, 111, 162, 213, 264], max_sizes=[60, 111, 162, 213, 264, 315],
                       aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]),
    (300, "coco"): dict(feature_maps=[38, 19, 10, 5, 3, 1], strides=[8, 16, 32, 64, 100, 300],
                        min_sizes=[21, 45, 99, 153, 207, 261], max_sizes=[45, 99, 153, 207, 261, 315],
                        aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]),
    (512, "voc"): dict(feature_maps=[64, 32, 16, 8, 4, 2, 1], strides=[8, 16, 32, 64, 128, 256, 512],
                       min_sizes=[35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8],
                       max_sizes=[76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.65],
                       aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]),
    (512, "coco"): dict(feature_maps=[64, 32, 16, 8, 4, 2, 1], strides=[8, 16, 32, 64, 128, 256, 512],
                        min_sizes=[20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8],
                        max_sizes=[51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72],
                        aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]),
}


def boxes_per_location(size: int) -> list[int]:
    return [2 + 2 * len(r) for r in PRIORS[(size, "voc")]["aspect_ratios"]]


def lufficc_state(size: int, num_classes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``SSDDetector(cfg).state_dict()`` for vgg_ssd{size}: backbone.vgg / l2_norm / extras, box_head.predictor."""
    shapes = vgg_shapes("backbone.vgg.")
    extras = vgg_extras(size)
    for k, (in_ch, out_ch, kernel, _, _) in enumerate(extras):
        shapes[f"backbone.extras.{k}.weight"], shapes[f"backbone.extras.{k}.bias"] = (out_ch, in_ch, kernel, kernel), (out_ch,)
    shapes["backbone.l2_norm.weight"] = (512,)
    channels = [512, 1024] + [layer[1] for layer in extras[1::2]]  # add_header: vgg[21], vgg[-2], extras[1::2]
    for level, (ch, k) in enumerate(zip(channels, boxes_per_location(size))):
        for name, per_box in (("cls_headers", num_classes), ("reg_headers", 4)):
            shapes[f"box_head.predictor.{name}.{level}.weight"] = (k * per_box, ch, 3, 3)
            shapes[f"box_head.predictor.{name}.{level}.bias"] = (k * per_box,)
    # conv1_1 sees 0..255 minus the mean: scale it to keep activations O(1); regression heads small (exp()).
    gains = {"backbone.vgg.0.weight": 1 / 80}
    gains.update({k: 0.3 for k in shapes if "reg_headers" in k})
    return random_state(shapes, seed, gains, scales=("backbone.l2_norm.weight",))


def lufficc_forward(state: dict[str, torch.Tensor], x: torch.Tensor, size: int, num_classes: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``VGG.forward`` + ``BoxPredictor.forward``: (cls_logits [B, N, C], bbox_pred [B, N, 4])."""
    x = run_vgg(state, "backbone.vgg.", x, 0, 23)
    features = [l2norm_lufficc(x, state["backbone.l2_norm.weight"])]
    x = run_vgg(state, "backbone.vgg.", x, 23, 35)
    features.append(x)
    for k, (_, _, _, stride, padding) in enumerate(vgg_extras(size)):
        x = F.relu(F.conv2d(x, state[f"backbone.extras.{k}.weight"], state[f"backbone.extras.{k}.bias"], stride, padding))
        if k % 2 == 1:
            features.append(x)
    cls = torch.cat([head(state, f"box_head.predictor.cls_headers.{i}", f, num_classes) for i, f in enumerate(features)], 1)
    reg = torch.cat([head(state, f"box_head.predictor.reg_headers.{i}", f, 4) for i, f in enumerate(features)], 1)
    return cls, reg


def resized(images: list[torch.Tensor], size: int) -> torch.Tensor:
    return torch.cat([F.interpolate(im[None], size=(size, size), mode="bilinear", align_corners=False) for im in images])


def xyxy(center_form: torch.Tensor) -> torch.Tensor:
    return torch.cat([center_form[:, :2] - center_form[:, 2:] / 2, center_form[:, :2] + center_form[:, 2:] / 2], 1)


@pytest.mark.parametrize("size,dataset", [(300, "voc"), (300, "coco"), (512, "voc"), (512, "coco")])
def test_default_boxes_are_lufficcs_priors(size: int, dataset: str) -> None:
    model = ssd_zoo.build(f"lufficc_vgg_ssd{size}", anchors=dataset, num_classes=21 if dataset == "voc" else 81)
    grids = [(f, f) for f in PRIORS[(size, dataset)]["feature_maps"]]
    ours = model.default_boxes.spec
    theirs = xyxy(priors(size, **PRIORS[(size, dataset)])) * size
    from ssd_zoo.ops.default_boxes import default_boxes
    assert torch.allclose(default_boxes(ours, grids, (size, size)), theirs, atol=1e-4)


@pytest.mark.parametrize("size,num_classes", [(300, 21), (512, 81)])
def test_dense_predictions_equal_lufficcs_forward(tmp_path, sample_images, size: int, num_classes: int) -> None:
    state = lufficc_state(size, num_classes)
    path = tmp_path / f"vgg_ssd{size}.pth"
    torch.save({"model": state, "iteration": 120000}, path)  # CheckPointer.save's dict
    model = ssd_zoo.load(path).eval()
    assert type(model).__name__ == "SSD" and model.builder["name"] == f"lufficc_vgg_ssd{size}"
    assert model.num_classes == num_classes and len(model.categories) == num_classes

    batch = resized(sample_images, size)
    with torch.inference_mode():
        dense = model.dense_predictions(batch)
        cls, reg = lufficc_forward(state, batch * 255 - PIXEL_MEAN, size, num_classes)
    dataset = "voc" if num_classes == 21 else "coco"
    scores, boxes = predictions(cls, reg, priors(size, **PRIORS[(size, dataset)]))
    assert scores.max() > 0.5 and scores.std() > 1 / num_classes  # not a comparison of near-uniform outputs
    torch.testing.assert_close(dense["scores"], scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(dense["boxes"] / size, boxes, atol=1e-4, rtol=0)


def test_thresholds_follow_lufficcs_evaluation_settings() -> None:
    model = ssd_zoo.build("lufficc_vgg_ssd300")
    assert model.thresholds == {"score_thresh": 0.01, "nms_thresh": 0.45, "topk_candidates": 8732,
                                "detections_per_img": 100, "clip_before_nms": False}
    assert ssd_zoo.build("lufficc_vgg_ssd512", detections_per_img=10).thresholds["detections_per_img"] == 10


def test_named_weights_load_from_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    entry = lufficc.Lufficc_VGG_SSD300_Weights.COCO_TRAINVAL35K
    (tmp_path / "checkpoints").mkdir()
    state = lufficc_state(300, 81, seed=1)
    torch.save({"model": state}, tmp_path / "checkpoints" / entry.meta["file_name"])
    model = ssd_zoo.build("lufficc_vgg_ssd300", weights="COCO_TRAINVAL35K")
    assert model.num_classes == 81 and model.categories[1] == "person" and model.categories[-1] == "toothbrush"
    assert model.default_boxes.spec == lufficc.BOXES[(300, "coco")]
    assert torch.equal(model.state_dict()["head.classification.2.weight"], state["box_head.predictor.cls_headers.2.weight"])
    assert "lufficc_vgg_ssd300.COCO_TRAINVAL35K" in ssd_zoo.list_weights()
    assert entry.meta["metrics"] == {"COCO-minival2014": {"box_map": 25.2}}


@pytest.mark.parametrize("size", [300, 512])
def test_convert_round_trip_is_exact(size: int) -> None:
    state = lufficc_state(size, 21)
    ours = convert.to_ssd_zoo(state, "lufficc")
    back = convert.from_ssd_zoo(ours, "lufficc")
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    model = ssd_zoo.build(f"lufficc_vgg_ssd{size}")
    model.load_state_dict(ours)  # every key and shape of the model


def test_other_lufficc_backbones_and_other_models_raise_clearly(tmp_path) -> None:
    resnet = {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7),  # not in its release: no model for it
              "box_head.predictor.cls_headers.0.weight": torch.zeros(126, 512, 3, 3)}
    torch.save({"model": resnet}, tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="vgg_ssd300.*mobilenet_v2_ssd320"):
        ssd_zoo.load(tmp_path / "resnet.pth")
    torch.save({"model": lufficc_state(300, 21)}, tmp_path / "ssd300.pth")
    with pytest.raises(ValueError, match="backbone.extras|missing|mis-shaped"):
        ssd_zoo.build("lufficc_vgg_ssd512", weights=str(tmp_path / "ssd300.pth"))


def test_other_class_counts_load_with_numbered_classes(tmp_path) -> None:
    torch.save({"model": lufficc_state(300, 5)}, tmp_path / "five.pth")
    model = ssd_zoo.load(tmp_path / "five.pth")
    assert model.num_classes == 5 and model.default_boxes.spec == lufficc.BOXES[(300, "voc")]
