"""qfgaohao/pytorch-ssd's vgg16-ssd, mb1-ssd and mb2-ssd-lite: its files load through ssd_zoo and predict as its code.

Its files are ``net.state_dict()`` (no wrapper); they are built here in its key layout and shapes, with random
weights, and compared with a plain-ops re-implementation of ``SSD.forward`` (``source_layer_indexes``,
``GraphPath``, ``compute_header``), ``generate_ssd_priors`` and ``convert_locations_to_boxes`` in
:mod:`publisher_reference` / below (no ssd_zoo).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from publisher_reference import (
    MB2_EXTRAS, batch_norm, bn_shapes, conv, head, l2norm_qfgaohao, mb2_blocks, predictions, priors, random_state,
    run_vgg, vgg_shapes,
)

import ssd_zoo
from ssd_zoo.weights import convert
from ssd_zoo.ops.default_boxes import default_boxes
from ssd_zoo.weights.publishers import qfgaohao

NUM_CLASSES = 21
# vision/ssd/config/vgg_ssd_config.py and mobilenetv1_ssd_config.py (also used by mb2-ssd-lite): SSDSpec lists, as
# at qfgaohao/pytorch-ssd af2e79be.
VGG_SPECS = dict(feature_maps=[38, 19, 10, 5, 3, 1], strides=[8, 16, 32, 64, 100, 300],
                 min_sizes=[30, 60, 111, 162, 213, 264], max_sizes=[60, 111, 162, 213, 264, 315],
                 aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]])
MOBILE_SPECS = dict(feature_maps=[19, 10, 5, 3, 2, 1], strides=[16, 32, 64, 100, 150, 300],
                    min_sizes=[60, 105, 150, 195, 240, 285], max_sizes=[105, 150, 195, 240, 285, 330],
                    aspect_ratios=[[2, 3]] * 6)
VGG_EXTRAS = [(1024, 256, 512, 2, 1), (512, 128, 256, 2, 1), (256, 128, 256, 1, 0), (256, 128, 256, 1, 0)]
MB1_EXTRAS = [(1024, 256, 512, 2, 1), (512, 128, 256, 2, 1), (256, 128, 256, 2, 1), (256, 128, 256, 2, 1)]
MB1_DW = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + \
    [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]


def header_shapes(channels: list[int], boxes: list[int], lite: bool = False) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for level, (ch, k) in enumerate(zip(channels, boxes)):
        for name, per_box in (("classification_headers", NUM_CLASSES), ("regression_headers", 4)):
            key, out = f"{name}.{level}", k * per_box
            if lite and level < len(channels) - 1:  # SeperableConv2d: dw conv (bias), BN, ReLU6, pw conv
                shapes.update({f"{key}.0.weight": (ch, 1, 3, 3), f"{key}.0.bias": (ch,), **bn_shapes(f"{key}.1", ch),
                               f"{key}.3.weight": (out, ch, 1, 1), f"{key}.3.bias": (out,)})
            else:
                kernel = 1 if lite else 3
                shapes.update({f"{key}.weight": (out, ch, kernel, kernel), f"{key}.bias": (out,)})
    return shapes


def inverted_residual_shapes(key: str, inp: int, oup: int, ratio: float) -> dict[str, tuple[int, ...]]:
    hidden = round(inp * ratio)
    if ratio == 1:
        return {f"{key}.conv.0.weight": (hidden, 1, 3, 3), **bn_shapes(f"{key}.conv.1", hidden),
                f"{key}.conv.3.weight": (oup, hidden, 1, 1), **bn_shapes(f"{key}.conv.4", oup)}
    return {f"{key}.conv.0.weight": (hidden, inp, 1, 1), **bn_shapes(f"{key}.conv.1", hidden),
            f"{key}.conv.3.weight": (hidden, 1, 3, 3), **bn_shapes(f"{key}.conv.4", hidden),
            f"{key}.conv.6.weight": (oup, hidden, 1, 1), **bn_shapes(f"{key}.conv.7", oup)}


def state_for(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """``create_<net>(21).state_dict()``'s keys and shapes, random values."""
    if net.startswith("vgg16-ssd"):
        # vgg_ssd.py: ScaledL2Norm(512, 20) as at 00f90007 (the published file), BatchNorm2d(512) as at d0465093.
        norm = bn_shapes("source_layer_add_ons.0", 512) if net == "vgg16-ssd-bn" else {"source_layer_add_ons.0.scale": (512,)}
        shapes = {**vgg_shapes("base_net."), **norm}
        for b, (inp, mid, out, _, _) in enumerate(VGG_EXTRAS):
            shapes.update({f"extras.{b}.0.weight": (mid, inp, 1, 1), f"extras.{b}.0.bias": (mid,),
                           f"extras.{b}.2.weight": (out, mid, 3, 3), f"extras.{b}.2.bias": (out,)})
        shapes.update(header_shapes([512, 1024, 512, 256, 256, 256], [4, 6, 6, 6, 4, 4]))
        gains = {"base_net.0.weight": 1 / 80}
    elif net == "mb1-ssd":
        shapes = {"base_net.0.0.weight": (32, 3, 3, 3), **bn_shapes("base_net.0.1", 32)}
        for k, (inp, oup, _) in enumerate(MB1_DW, start=1):
            shapes.update({f"base_net.{k}.0.weight": (inp, 1, 3, 3), **bn_shapes(f"base_net.{k}.1", inp),
                           f"base_net.{k}.3.weight": (oup, inp, 1, 1), **bn_shapes(f"base_net.{k}.4", oup)})
        for b, (inp, mid, out, _, _) in enumerate(MB1_EXTRAS):
            shapes.update({f"extras.{b}.0.weight": (mid, inp, 1, 1), f"extras.{b}.0.bias": (mid,),
                           f"extras.{b}.2.weight": (out, mid, 3, 3), f"extras.{b}.2.bias": (out,)})
        shapes.update(header_shapes([512, 1024, 512, 256, 256, 256], [6] * 6))
        gains = {}
    else:
        shapes = {"base_net.0.0.weight": (32, 3, 3, 3), **bn_shapes("base_net.0.1", 32)}
        for k, (inp, oup, _, t) in enumerate(mb2_blocks(), start=1):
            shapes.update(inverted_residual_shapes(f"base_net.{k}", inp, oup, t))
        shapes.update({"base_net.18.0.weight": (1280, 320, 1, 1), **bn_shapes("base_net.18.1", 1280)})
        for b, (inp, oup, ratio) in enumerate(MB2_EXTRAS):
            shapes.update(inverted_residual_shapes(f"extras.{b}", inp, oup, ratio))
        shapes.update(header_shapes([576, 1280, 512, 256, 256, 64], [6] * 6, lite=True))
        gains = {}
    gains.update({k: 0.3 for k in shapes if k.startswith("regression_headers")})
    return random_state(shapes, seed, gains, scales=("source_layer_add_ons.0.scale",))


def conv_bn_relu(state, key_conv, key_bn, x, act=F.relu, **kw):
    return act(batch_norm(state, key_bn, conv(state, key_conv, x, **kw)))


def inverted_residual(state, key: str, x, stride: int, ratio: float, stop: int | None = None, start: int = 0):
    """``InvertedResidual.conv`` layers ``[start:stop]`` (as qfgaohao's Sequential indexes them), + residual."""
    ops = ([("conv", f"{key}.conv.0", True, 1), ("bn", f"{key}.conv.1"), ("relu6",),
            ("conv", f"{key}.conv.3", False, 0), ("bn", f"{key}.conv.4")] if ratio == 1 else
           [("conv", f"{key}.conv.0", False, 0), ("bn", f"{key}.conv.1"), ("relu6",),
            ("conv", f"{key}.conv.3", True, 1), ("bn", f"{key}.conv.4"), ("relu6",),
            ("conv", f"{key}.conv.6", False, 0), ("bn", f"{key}.conv.7")])
    inp = x
    for op in ops[start:stop]:
        if op[0] == "conv":
            _, k, depthwise, pad = op
            x = conv(state, k, x, stride=stride if depthwise else 1, padding=pad, groups=x.shape[1] if depthwise else 1)
        elif op[0] == "bn":
            x = batch_norm(state, op[1], x)
        else:
            x = F.relu6(x)
    residual = start == 0 and stop is None and stride == 1 and inp.shape[1] == x.shape[1]
    return inp + x if residual else x


def qfgaohao_forward(net: str, state, x):
    """``SSD.forward`` (is_test=False: confidences and locations) for ``net``."""
    if net.startswith("vgg16-ssd"):
        x = run_vgg(state, "base_net.", x, 0, 23)  # source_layer_indexes[0] = (23, add-on): base_net[:23], then it
        features = [batch_norm(state, "source_layer_add_ons.0", x) if net == "vgg16-ssd-bn"
                    else l2norm_qfgaohao(x, state["source_layer_add_ons.0.scale"])]
        x = run_vgg(state, "base_net.", x, 23, 35)
        features.append(x)
        extras = VGG_EXTRAS
    elif net == "mb1-ssd":
        x = conv_bn_relu(state, "base_net.0.0", "base_net.0.1", x, stride=2, padding=1)
        features = []
        for k, (inp, _, stride) in enumerate(MB1_DW, start=1):
            x = conv_bn_relu(state, f"base_net.{k}.0", f"base_net.{k}.1", x, stride=stride, padding=1, groups=inp)
            x = conv_bn_relu(state, f"base_net.{k}.3", f"base_net.{k}.4", x)
            if k in (11, 13):  # source_layer_indexes [12, 14]: after base_net[:12] and base_net[12:14]
                features.append(x)
        extras = MB1_EXTRAS
    else:
        x = conv_bn_relu(state, "base_net.0.0", "base_net.0.1", x, act=F.relu6, stride=2, padding=1)
        features = []
        for k, (_, _, stride, t) in enumerate(mb2_blocks(), start=1):
            if k == 14:  # GraphPath(14, 'conv', 3): the header sees conv[:3], the net continues with conv[3:]
                y = inverted_residual(state, "base_net.14", x, stride, t, stop=3)
                features.append(y)
                x = inverted_residual(state, "base_net.14", y, stride, t, start=3)
            else:
                x = inverted_residual(state, f"base_net.{k}", x, stride, t)
        features.append(conv_bn_relu(state, "base_net.18.0", "base_net.18.1", x, act=F.relu6))
        x = features[-1]
        for b, (_, _, ratio) in enumerate(MB2_EXTRAS):
            x = inverted_residual(state, f"extras.{b}", x, 2, ratio)
            features.append(x)
        extras = []
    for b, (_, _, _, stride, padding) in enumerate(extras):
        x = F.relu(conv(state, f"extras.{b}.0", x))
        x = F.relu(conv(state, f"extras.{b}.2", x, stride=stride, padding=padding))
        features.append(x)
    lite = net == "mb2-ssd-lite"
    cls = torch.cat([head(state, f"classification_headers.{i}", f, NUM_CLASSES, lite) for i, f in enumerate(features)], 1)
    reg = torch.cat([head(state, f"regression_headers.{i}", f, 4, lite) for i, f in enumerate(features)], 1)
    return cls, reg


MODELS = {"vgg16-ssd": "qfgaohao_vgg16_ssd", "vgg16-ssd-bn": "qfgaohao_vgg16_ssd", "mb1-ssd": "qfgaohao_mb1_ssd",
          "mb2-ssd-lite": "qfgaohao_mb2_ssd_lite"}
# image_mean / image_std of vision/ssd/config/vgg_ssd_config.py and mobilenetv1_ssd_config.py (as at af2e79be).
MEANS = {"vgg16-ssd": (torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1), 1.0),
         "vgg16-ssd-bn": (torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1), 1.0),
         "mb1-ssd": (torch.tensor(127.0), 128.0), "mb2-ssd-lite": (torch.tensor(127.0), 128.0)}


@pytest.mark.parametrize("net", sorted(MODELS))
def test_dense_predictions_equal_qfgaohaos_forward(tmp_path, sample_images, net: str) -> None:
    state = state_for(net)
    path = tmp_path / f"{net}.pth"
    torch.save(state, path)  # SSD.save: torch.save(self.state_dict(), path)
    model = ssd_zoo.load(path).eval()
    assert model.builder["name"] == MODELS[net] and model.categories[15] == "person"
    assert model.builder["kwargs"] == ({"conv4_3_norm": "batch_norm"} if net == "vgg16-ssd-bn" else {})

    batch = torch.cat([F.interpolate(im[None], size=(300, 300), mode="bilinear", align_corners=False)
                       for im in sample_images])
    mean, std = MEANS[net]
    with torch.inference_mode():
        dense = model.dense_predictions(batch)
        cls, reg = qfgaohao_forward(net, state, (batch * 255 - mean) / std)
    scores, boxes = predictions(cls, reg, priors(300, **(VGG_SPECS if net.startswith("vgg16") else MOBILE_SPECS)))
    assert scores.max() > 0.5 and scores.std() > 1 / NUM_CLASSES  # not a comparison of near-uniform outputs
    torch.testing.assert_close(dense["scores"], scores, atol=1e-4, rtol=0)
    torch.testing.assert_close(dense["boxes"] / 300, boxes, atol=1e-4, rtol=0)


@pytest.mark.parametrize("net", ["mb1-ssd", "mb2-ssd-lite", "vgg16-ssd"])
def test_default_boxes_are_generate_ssd_priors(net: str) -> None:
    specs = VGG_SPECS if net == "vgg16-ssd" else MOBILE_SPECS
    spec = qfgaohao.VGG_BOXES if net == "vgg16-ssd" else qfgaohao.MOBILE_BOXES
    c = priors(300, **specs)
    theirs = torch.cat([c[:, :2] - c[:, 2:] / 2, c[:, :2] + c[:, 2:] / 2], 1) * 300
    ours = default_boxes(spec, [(f, f) for f in specs["feature_maps"]], (300, 300))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("net", sorted(MODELS))
def test_convert_round_trip_is_exact(net: str) -> None:
    state = state_for(net, seed=3)
    back = convert.from_ssd_zoo(convert.to_ssd_zoo(state, "qfgaohao"), "qfgaohao")
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_thresholds_and_entries_follow_qfgaohaos_predictor() -> None:
    model = ssd_zoo.build("qfgaohao_mb2_ssd_lite")
    assert model.thresholds == {"score_thresh": 0.01, "nms_thresh": 0.45, "topk_candidates": 200,
                                "detections_per_img": 4000, "clip_before_nms": False}
    entry = qfgaohao.Qfgaohao_VGG16_SSD_Weights.VOC0712
    assert entry.meta["metrics"] == {"VOC2007-test": {"mAP": 77.26}} and "weights=" in entry.meta["where_to_get"]
    assert {"qfgaohao_mb1_ssd.VOC0712", "qfgaohao_mb2_ssd_lite.VOC0712"} <= set(ssd_zoo.list_weights())


def test_named_entry_reads_the_file_a_user_put_in_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    state = state_for("mb1-ssd", seed=2)
    torch.save(state, tmp_path / "checkpoints" / "mobilenet-v1-ssd-mp-0_675.pth")
    model = ssd_zoo.build("qfgaohao_mb1_ssd", weights="VOC0712")
    assert torch.equal(model.state_dict()["backbone.body.blocks.3.5.conv_pw.weight"], state["base_net.11.3.weight"])
    assert model.transform.std.flatten().tolist() == pytest.approx([128 / 255] * 3)


def test_unsupported_nets_and_wrong_models_raise_clearly(tmp_path) -> None:
    lite_v1 = {"base_net.13.3.weight": torch.zeros(1024, 1024, 1, 1),
               "classification_headers.0.0.weight": torch.zeros(512, 1, 3, 3)}
    torch.save(lite_v1, tmp_path / "mb1-ssd-lite.pth")
    with pytest.raises(ValueError, match="mb1-ssd-lite"):
        ssd_zoo.load(tmp_path / "mb1-ssd-lite.pth")
    torch.save(state_for("mb1-ssd"), tmp_path / "mb1.pth")
    with pytest.raises(ValueError, match="does not fit"):
        ssd_zoo.build("qfgaohao_mb2_ssd_lite", weights=str(tmp_path / "mb1.pth"))


def test_a_failed_download_says_where_to_get_the_file(monkeypatch) -> None:
    def offline(url: str, **kwargs: object) -> None:
        raise RuntimeError(f"could not download {url}")

    monkeypatch.setattr(ssd_zoo.files, "download", offline)
    with pytest.raises(RuntimeError, match=r"Where to get it: .*qfgaohao/pytorch-ssd#pretrained-models"):
        ssd_zoo.build("qfgaohao_vgg16_ssd", weights="VOC0712")
