"""lufficc/SSD's MobileNetV2 / MobileNetV3 SSDLite320 and EfficientNet-B3 SSD300: files in its layout load through
ssd_zoo and predict exactly as its code.

The checkpoints are built here in lufficc's key layout and shapes (``CheckPointer`` saves ``{"model": ...}``), with
random weights scaled to keep activations O(1); the reference forward passes are re-implemented with plain ops in
:mod:`publisher_reference_lufficc`, its priors and decoding in :mod:`publisher_reference` (no ssd_zoo).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from publisher_reference import predictions, priors, random_state
from publisher_reference_lufficc import (
    b3_forward, b3_shapes, mb2_forward, mb2_shapes, mb3_forward, mb3_shapes, predict, predictor_shapes,
)

import ssd_zoo
from ssd_zoo.weights import convert
from ssd_zoo.finetune.anchor_coverage import anchor_boxes
from ssd_zoo.ops.default_boxes import DefaultBoxSpec, default_boxes, grid_sides

pytestmark = pytest.mark.usefixtures("one_thread")

PIXEL_MEAN = torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)  # INPUT.PIXEL_MEAN, RGB (config/defaults.py)
_MOBILE_PRIORS = dict(feature_maps=[20, 10, 5, 3, 2, 1], min_sizes=[60, 105, 150, 195, 240, 285],
                      max_sizes=[105, 150, 195, 240, 285, 330], aspect_ratios=[[2, 3]] * 6)
# name -> (INPUT.IMAGE_SIZE, MODEL.PRIORS, MODEL.BACKBONE.OUT_CHANNELS, SSDLite predictor?) of its config, as at
# lufficc/SSD accc3109 (README "MODEL ZOO" of the release-1.2 files). mobilenet_v2_ssd320_voc0712.yaml's STRIDES:
# [16, 32, 64, 107, 160, 320] since c16e459 ("fix #137", 2020-03-13: the _v2 file), [16, 32, 64, 100, 150, 300]
# before (at 09fb318c: the first file).
CONFIGS = {
    "mobilenet_v2": (320, dict(_MOBILE_PRIORS, strides=[16, 32, 64, 107, 160, 320]), [96, 1280, 512, 256, 256, 64],
                     True),
    "mobilenet_v3": (320, dict(_MOBILE_PRIORS, strides=[16, 32, 64, 107, 160, 320]), [112, 960, 512, 256, 256, 64],
                     True),
    "efficient_net_b3": (300, dict(feature_maps=[38, 19, 10, 5, 3, 1], strides=[8, 16, 32, 64, 100, 300],
                                   min_sizes=[30, 60, 111, 162, 213, 264], max_sizes=[60, 111, 162, 213, 264, 315],
                                   aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]),
                         [48, 136, 384, 256, 256, 256], False),
}
MODELS = {"mobilenet_v2": "lufficc_mobilenet_v2_ssd320", "mobilenet_v3": "lufficc_mobilenet_v3_ssd320",
          "efficient_net_b3": "lufficc_efficient_net_b3_ssd300"}
NUM_CLASSES = 21
# (backbone, class predictor, box predictor) weight gains: with random BatchNorm statistics the deeper nets' maps
# drift away from O(1) (their std stays within about 0.2..5 with these, found by trying), the class logits must
# not be near 0, and the box offsets must stay small (exp()).
GAINS = {"mobilenet_v2": (0.9, 1.0, 0.3), "mobilenet_v3": (0.87, 3.0, 0.3), "efficient_net_b3": (0.95, 4.0, 0.1)}


def lufficc_state(net: str, seed: int = 0, extra_kernel: int = 3) -> dict[str, torch.Tensor]:
    """``SSDDetector(cfg).state_dict()`` of ``configs/<net>_*_voc0712.yaml``: keys and shapes, random values."""
    _, prior, channels, lite = CONFIGS[net]
    backbone = {"mobilenet_v2": mb2_shapes, "mobilenet_v3": lambda: mb3_shapes(extra_kernel),
                "efficient_net_b3": b3_shapes}
    boxes = [2 + 2 * len(r) for r in prior["aspect_ratios"]]
    shapes = backbone[net]()
    body_gain, cls_gain, reg_gain = GAINS[net]
    gains = {k: body_gain for k, v in shapes.items() if len(v) > 1}
    # The stem sees 0..255 minus the mean: scale it to keep activations O(1); regression heads small (exp()).
    gains[next(k for k, v in shapes.items() if len(v) == 4 and v[1] == 3)] = 1 / 80
    shapes.update(predictor_shapes(channels, boxes, NUM_CLASSES, lite))
    gains.update({k: reg_gain if "reg_headers" in k else cls_gain for k in shapes if k.startswith("box_head.")})
    return random_state(shapes, seed, gains)


def lufficc_forward(net: str, state: dict[str, torch.Tensor], x: torch.Tensor, extra_kernel: int = 3
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    if net == "mobilenet_v2":
        features = mb2_forward(state, x)
    elif net == "mobilenet_v3":
        features = mb3_forward(state, x, extra_kernel)
    else:
        features = b3_forward(state, x)
    return predict(state, features, NUM_CLASSES)


def resized(images: list[torch.Tensor], size: int) -> torch.Tensor:
    return torch.cat([F.interpolate(im[None], size=(size, size), mode="bilinear", align_corners=False)
                      for im in images])


@pytest.mark.parametrize("net,extra_kernel", [("mobilenet_v2", 3), ("mobilenet_v3", 3), ("mobilenet_v3", 1),
                                              ("efficient_net_b3", 3)])
def test_dense_predictions_equal_lufficcs_forward(tmp_path, sample_images, net: str, extra_kernel: int) -> None:
    if net == "efficient_net_b3":
        pytest.importorskip("timm")
    size, prior, _, _ = CONFIGS[net]
    state = lufficc_state(net, extra_kernel=extra_kernel)
    path = tmp_path / f"{net}.pth"
    torch.save({"model": state, "iteration": 120000}, path)  # CheckPointer.save's dict
    loaded = ssd_zoo.load(path).eval()
    built = ssd_zoo.build(MODELS[net], weights=str(path)).eval()
    assert loaded.builder["name"] == MODELS[net] and loaded.num_classes == NUM_CLASSES and loaded.input_size == size

    batch = resized(sample_images, size)
    with torch.inference_mode():
        dense = loaded.dense_predictions(batch)
        cls, reg = lufficc_forward(net, state, batch * 255 - PIXEL_MEAN, extra_kernel)
        again = built.dense_predictions(batch)
    scores, boxes = predictions(cls, reg, priors(size, **prior))
    assert scores.max() > 0.5 and scores.std() > 1 / NUM_CLASSES  # not a comparison of near-uniform outputs
    torch.testing.assert_close(dense["scores"], scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(dense["boxes"] / size, boxes, atol=1e-4, rtol=0)
    torch.testing.assert_close(again["scores"], dense["scores"], atol=0, rtol=0)


V2_STEPS300_PRIORS = dict(_MOBILE_PRIORS, strides=[16, 32, 64, 100, 150, 300])  # the config at 09fb318c


@pytest.mark.parametrize("net, kwargs", [("mobilenet_v2", {}), ("mobilenet_v2", {"anchors": "steps320"}),
                                         ("mobilenet_v2_steps300", {"anchors": "steps300"}), ("mobilenet_v3", {})])
def test_default_boxes_are_lufficcs_priors(net: str, kwargs: dict) -> None:
    size, prior, _, _ = CONFIGS[net] if net in CONFIGS else (320, V2_STEPS300_PRIORS, None, None)
    spec = ssd_zoo.build(MODELS[net.removesuffix("_steps300")], **kwargs).default_boxes.spec
    theirs = priors(size, **prior)
    theirs = torch.cat([theirs[:, :2] - theirs[:, 2:] / 2, theirs[:, :2] + theirs[:, 2:] / 2], 1) * size
    ours = default_boxes(spec, [(f, f) for f in prior["feature_maps"]], (size, size))
    assert torch.allclose(ours, theirs, atol=1e-4)
    # The spec itself knows the maps (V2's steps would derive 4/3/2): what the anchor tools lay out, and the record.
    assert grid_sides(spec) == prior["feature_maps"] and DefaultBoxSpec.from_dict(spec.to_dict()) == spec
    assert torch.allclose(anchor_boxes(spec), theirs, atol=1e-4)


@pytest.mark.parametrize("net", ["mobilenet_v2", "mobilenet_v3", "efficient_net_b3"])
def test_convert_round_trip_is_exact(net: str) -> None:
    if net == "efficient_net_b3":
        pytest.importorskip("timm")
    state = lufficc_state(net)
    ours = convert.to_ssd_zoo(state, "lufficc")
    back = convert.from_ssd_zoo(ours, "lufficc")
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    ssd_zoo.build(MODELS[net]).load_state_dict(ours)  # every key and shape of the model


def test_wrong_shapes_and_unknown_keys_raise_naming_them(tmp_path) -> None:
    state = lufficc_state("mobilenet_v3", extra_kernel=3)
    state["backbone.features.5.conv.3.weight"] = torch.zeros(120, 1, 3, 3)  # a 5x5 depthwise conv, as 3x3
    torch.save({"model": state}, tmp_path / "mis-shaped.pth")
    with pytest.raises(ValueError, match=r"mis-shaped keys .*backbone\.blocks\.4\.depthwise\.conv\.weight"):
        ssd_zoo.load(tmp_path / "mis-shaped.pth")
    state = lufficc_state("mobilenet_v2")
    state["backbone.features.19.0.weight"] = torch.zeros(8, 8, 1, 1)  # not lufficc's MobileNetV2: not in the model
    torch.save({"model": state}, tmp_path / "unknown.pth")
    with pytest.raises(ValueError, match=r"unexpected keys .*backbone\.features\.19\.0\.weight"):
        ssd_zoo.load(tmp_path / "unknown.pth")
    del state["backbone.features.19.0.weight"]
    state["box_head.predictor.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"box_head\.predictor\.extra\.weight"):
        convert.to_ssd_zoo(state, "lufficc")


def test_thresholds_and_entries_follow_lufficcs_configs() -> None:
    model = ssd_zoo.build("lufficc_mobilenet_v2_ssd320")
    assert model.thresholds == {"score_thresh": 0.01, "nms_thresh": 0.45, "topk_candidates": 3234,
                                "detections_per_img": 100, "clip_before_nms": False}
    assert model.input_size == 320 and model.num_classes == NUM_CLASSES
    names = set(ssd_zoo.list_weights())
    assert {f"{m}.VOC0712" for m in MODELS.values()} <= names
    metrics = {m: ssd_zoo.get_weights(f"{m}.VOC0712").meta for m in MODELS.values()}
    assert {m: meta["metrics"]["VOC2007-test"]["mAP"] for m, meta in metrics.items()} == {
        "lufficc_mobilenet_v2_ssd320": 68.9, "lufficc_mobilenet_v3_ssd320": 69.5,
        "lufficc_efficient_net_b3_ssd300": 73.9}
    v2 = metrics["lufficc_mobilenet_v2_ssd320"]
    assert v2["file_name"] == "mobilenet_v2_ssd320_voc0712_v2.pth" and v2["licence"] == "MIT"
    assert v2["recipe"].endswith("/c16e459/configs/mobilenet_v2_ssd320_voc0712.yaml") and v2["anchors"] == "steps320"
    first = ssd_zoo.get_weights("lufficc_mobilenet_v2_ssd320.VOC0712_STEPS300").meta
    assert first["file_name"] == "mobilenet_v2_ssd320_voc0712.pth" and first["metrics"]["VOC2007-test"]["mAP"] == 68.8
    assert first["anchors"] == "steps300" and "09fb318c" in first["source_commit"]


@pytest.mark.parametrize("file_name, strides", [("mobilenet_v2_ssd320_voc0712_v2.pth", [16, 32, 64, 107, 160, 320]),
                                                ("mobilenet_v2_ssd320_voc0712.pth", [16, 32, 64, 100, 150, 300])])
def test_each_v2_release_file_gets_the_steps_it_was_trained_with(tmp_path, monkeypatch, file_name: str,
                                                                 strides: list[int]) -> None:
    """By name from the cache and by path: the _v2 file (c16e459's config) and the first file (the config before)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save({"model": lufficc_state("mobilenet_v2")}, tmp_path / "checkpoints" / file_name)
    member = "VOC0712" if file_name.endswith("_v2.pth") else "VOC0712_STEPS300"
    want = priors(320, **dict(_MOBILE_PRIORS, strides=strides))
    want = torch.cat([want[:, :2] - want[:, 2:] / 2, want[:, :2] + want[:, 2:] / 2], 1) * 320
    for weights in (member, str(tmp_path / "checkpoints" / file_name)):
        model = ssd_zoo.build("lufficc_mobilenet_v2_ssd320", weights=weights)
        assert torch.allclose(anchor_boxes(model.default_boxes.spec), want, atol=1e-4), weights
    other = "steps320" if member == "VOC0712_STEPS300" else "steps300"
    with pytest.raises(ValueError, match=f"anchors='{other}' conflicts with weights .*{member}"):
        ssd_zoo.build("lufficc_mobilenet_v2_ssd320", weights=member, anchors=other)


def test_named_weights_load_from_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    state = lufficc_state("mobilenet_v3", seed=1, extra_kernel=1)
    torch.save({"model": state}, tmp_path / "checkpoints" / "mobilenet_v3_ssd320_voc0712.pth")
    model = ssd_zoo.build("lufficc_mobilenet_v3_ssd320", weights="VOC0712")
    assert model.categories[1] == "aeroplane" and model.backbone.extras[0].depthwise.conv.kernel_size == (1, 1)
    ours, theirs = model.state_dict()["head.classification.5.weight"], state["box_head.predictor.cls_headers.5.weight"]
    assert torch.equal(ours, theirs)
