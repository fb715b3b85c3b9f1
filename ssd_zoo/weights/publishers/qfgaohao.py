"""qfgaohao/pytorch-ssd (https://github.com/qfgaohao/pytorch-ssd): ``vgg16-ssd``, ``mb1-ssd``, ``mb2-ssd-lite``, VOC.

Read from its code (``vision/ssd/ssd.py``, ``vgg_ssd.py``, ``mobilenetv1_ssd.py``, ``mobilenet_v2_ssd_lite.py``,
``vision/nn/{vgg,mobilenet,mobilenet_v2,scaled_l2_norm}.py``, ``vision/ssd/config/*``, ``vision/utils/box_utils.py``,
``vision/ssd/predictor.py``, ``eval_ssd.py``). Its files are ``net.state_dict()`` as saved (no wrapper):
``base_net.N`` (the backbone as one ``nn.ModuleList`` / ``nn.Sequential``), ``source_layer_add_ons.0.scale``
(VGG's L2Norm), ``extras.N``, ``classification_headers.N``, ``regression_headers.N``; heads flatten box-major
(channel = box * C + class), as ssd_zoo's.

- ``vgg16-ssd``: ssd.pytorch's VGG16 (exactly :class:`~ssd_zoo.models.vgg.VGG16Backbone`), 300 input, the
  paper's VOC boxes (30..315, steps 8..300), RGB minus (123, 117, 104) on 0..255; conv4_3's map goes through
  ``ScaledL2Norm(512, 20)`` (``source_layer_add_ons.0.scale``) in the published file (``vgg_ssd.py`` as at
  00f90007), through ``BatchNorm2d(512)`` (``source_layer_add_ons.0.weight/bias/running_*``) in what
  ``create_vgg_ssd`` builds since it was made ONNX-friendly (as at d0465093; README "ONNX Friendly VGG16 SSD"):
  both load, the builder's ``conv4_3_norm`` follows the file;
- ``mb1-ssd``: MobileNetV1 with ReLU (exactly timm's ``mobilenetv1_100`` with ``act_layer="relu"``), maps at
  strides 16 and 32, four extras (1x1 + ReLU, 3x3 stride 2 + ReLU, no BN), 3x3 heads;
- ``mb2-ssd-lite``: torchvision's MobileNetV2 (ReLU6), the expansion of its first stride-32 block as the first
  map, inverted-residual extras, separable heads (:mod:`ssd_zoo.models.mobilenet_v2_ssdlite`);
- both MobileNets: 300 input, ``(x - 127) / 128`` on 0..255 RGB, boxes 60..330 px on maps 19/10/5/3/2/1 with
  steps 16/32/64/100/150/300, ratios 2 and 3 everywhere;
- all: priors clamped to [0, 1] (centres too: clip="all"), variances 0.1 / 0.2, softmax; evaluation
  (``eval_ssd.py`` -> ``Predictor``): score > 0.01, per class the best 200 into hard NMS at IoU 0.45, no cap per image.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor
from torchvision.models import WeightsEnum

from ssd_zoo.weights import convert
from ssd_zoo.models.record import split_record
from ssd_zoo.models.builder import assemble_ssd
from ssd_zoo.models.head import SSDHead
from ssd_zoo.models.mobilenet_v2_ssdlite import MobileNetV2LiteBackbone, SeparableLiteHead
from ssd_zoo.models.ssd import SSD
from ssd_zoo.models.timm_backbone import TimmBackbone, create_features
from ssd_zoo.models.vgg import VGG16Backbone
from ssd_zoo.ops.default_boxes import grid_sides, spec_from_min_max
from ssd_zoo.weights.published import VOC_CATEGORIES, register_weights, ssd_weights
from ssd_zoo.registry import register_model
from ssd_zoo.weights.resolve import builder_config, fetch_weights

LAYOUT = "qfgaohao"
VGG_MEAN, VGG_STD = (123 / 255, 117 / 255, 104 / 255), (1 / 255,) * 3  # image_mean [123, 117, 104], std 1
MOBILE_MEAN, MOBILE_STD = (127 / 255,) * 3, (128 / 255,) * 3  # image_mean 127, image_std 128.0

VGG_BOXES = spec_from_min_max(300, (30, 60, 111, 162, 213, 264), (60, 111, 162, 213, 264, 315),
                              ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)), (8, 16, 32, 64, 100, 300))
MOBILE_BOXES = spec_from_min_max(300, (60, 105, 150, 195, 240, 285), (105, 150, 195, 240, 285, 330),
                                 ((2, 3),) * 6, (16, 32, 64, 100, 150, 300))
CANDIDATES = 200  # Predictor's candidate_size: per class, the best 200 boxes enter NMS


def _thresholds(num_classes: int) -> dict[str, float]:
    """``Predictor`` defaults; ``top_k=-1`` keeps every NMS survivor, at most 200 per foreground class; NMS on
    the boxes as decoded (``Predictor.predict`` clips nothing)."""
    return {"score_thresh": 0.01, "nms_thresh": 0.45, "topk_candidates": CANDIDATES,
            "detections_per_img": CANDIDATES * (num_classes - 1), "clip_before_nms": False}


# ---- the layout ----------------------------------------------------------------------------------------------
def _rekey(state_dict: Mapping[str, Tensor], rules: list, source: str) -> dict[str, Tensor]:
    """Rename every key by the first rule whose pattern matches; keys no rule matches raise ValueError."""
    out, unknown = {}, []
    for key, value in state_dict.items():
        for pattern, new in rules:
            match = re.match(pattern, key)
            if match:
                out[new(match) + key[match.end():]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{source} state dict: keys {unknown[:8]} fit no part of the model")
    return out


def _module_rules(table: dict[str, str]) -> list:
    """Module-name table (``"base_net.0.0": "backbone.body.conv_stem"``) -> :func:`_rekey` rules (params kept)."""
    return [(re.escape(src) + r"\.", lambda m, dst=dst: dst + ".") for src, dst in table.items()]


def _head_table(levels: int, lite: bool) -> dict[str, str]:
    table = {}
    for level in range(levels):
        for theirs, ours in (("classification_headers", "classification"), ("regression_headers", "regression")):
            if lite and level < levels - 1:  # SeperableConv2d: (depthwise, BN, ReLU6, pointwise)
                for index, part in (("0", "depthwise"), ("1", "bn"), ("3", "pointwise")):
                    table[f"{theirs}.{level}.{index}"] = f"head.{ours}.{level}.{part}"
            else:
                table[f"{theirs}.{level}"] = f"head.{ours}.{level}"
    return table


_VGG_CONVS = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "3_3", "4_1", "4_2", "4_3", "5_1", "5_2", "5_3"]
# Where each conv sits in vision/nn/vgg.py's list (conv, ReLU, pools 'M'/'C'), as in ssd.pytorch: fc6 31, fc7 33.
_VGG_INDICES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def _vgg_table() -> dict[str, str]:
    """qfgaohao's ``create_vgg_ssd`` modules -> :class:`~ssd_zoo.models.vgg.VGG16Backbone`'s: ``base_net.N`` (the
    ``vgg()`` list), ``source_layer_add_ons.0`` (a ``BatchNorm2d(512)`` since vgg_ssd.py replaced its ScaledL2Norm,
    whose ``scale`` has a rule of its own), ``extras.B`` = Sequential(1x1, ReLU, 3x3, ReLU), 3x3 headers."""
    table = {f"base_net.{i}": f"backbone.{'fc' if c.startswith('5') else 'features'}.conv{c}"
             for c, i in zip(_VGG_CONVS, _VGG_INDICES)}
    table.update({"base_net.31": "backbone.fc.fc6", "base_net.33": "backbone.fc.fc7",
                  "source_layer_add_ons.0": "backbone.bn4_3"})
    for b in range(4):
        n = b + 8
        table[f"extras.{b}.0"], table[f"extras.{b}.2"] = f"backbone.extras.conv{n}.conv{n}_1", f"backbone.extras.conv{n}.conv{n}_2"
    return {**table, **_head_table(6, lite=False)}


# ScaledL2Norm(512, 20)'s one parameter (vision/nn/scaled_l2_norm.py), the published file's conv4_3 norm.
_SCALE, _L2NORM = "source_layer_add_ons.0.scale", "backbone.l2norm.weight"


def _mb1_table() -> dict[str, str]:
    """qfgaohao's MobileNetV1 ``model`` (conv_bn, then 13 conv_dw: (dw, BN, ReLU, pw, BN, ReLU)) -> timm's
    ``mobilenetv1_100`` (stages of 1, 2, 2, 6, 2 DepthwiseSeparableConv blocks)."""
    table = {"base_net.0.0": "backbone.body.conv_stem", "base_net.0.1": "backbone.body.bn1"}
    blocks = [(stage, i) for stage, count in enumerate((1, 2, 2, 6, 2)) for i in range(count)]
    for k, (stage, i) in enumerate(blocks, start=1):
        for index, part in (("0", "conv_dw"), ("1", "bn1"), ("3", "conv_pw"), ("4", "bn2")):
            table[f"base_net.{k}.{index}"] = f"backbone.body.blocks.{stage}.{i}.{part}"
    for b in range(4):  # Sequential(1x1, ReLU, 3x3 stride 2, ReLU)
        table[f"extras.{b}.0"], table[f"extras.{b}.2"] = f"backbone.extras.{b}.reduce.conv", f"backbone.extras.{b}.shrink.conv"
    return {**table, **_head_table(6, lite=False)}


# An inverted residual's `conv`: qfgaohao (pw, BN, ReLU6, dw, BN, ReLU6, pw-linear, BN) -> torchvision
# ((pw, BN), (dw, BN), pw-linear, BN); with expand_ratio 1 (dw, BN, ReLU6, pw-linear, BN) -> ((dw, BN), pw, BN).
_EXPANDED = (("0", "0.0"), ("1", "0.1"), ("3", "1.0"), ("4", "1.1"), ("6", "2"), ("7", "3"))
_NOT_EXPANDED = (("0", "0.0"), ("1", "0.1"), ("3", "1"), ("4", "2"))


def _mb2_lite_table() -> dict[str, str]:
    """qfgaohao's MobileNetV2 ``features`` + extras -> :class:`MobileNetV2LiteBackbone` (torchvision's names)."""
    table = {"base_net.0.0": "backbone.features.0.0", "base_net.0.1": "backbone.features.0.1",
             "base_net.18.0": "backbone.features.18.0", "base_net.18.1": "backbone.features.18.1"}
    for k in range(1, 18):
        for theirs, ours in _NOT_EXPANDED if k == 1 else _EXPANDED:
            table[f"base_net.{k}.conv.{theirs}"] = f"backbone.features.{k}.conv.{ours}"
    for b in range(4):
        for theirs, ours in _EXPANDED:
            table[f"extras.{b}.conv.{theirs}"] = f"backbone.extras.{b}.conv.{ours}"
    return {**table, **_head_table(6, lite=True)}


# net name -> registered model; net name -> module table qfgaohao -> ssd_zoo.
_NETS = {"vgg16-ssd": "qfgaohao_vgg16_ssd", "mb1-ssd": "qfgaohao_mb1_ssd", "mb2-ssd-lite": "qfgaohao_mb2_ssd_lite"}
_TABLES = {"vgg16-ssd": _vgg_table(), "mb1-ssd": _mb1_table(), "mb2-ssd-lite": _mb2_lite_table()}


def net_type(state_dict: Mapping[str, Tensor]) -> str:
    """Which of qfgaohao's nets a state dict is ("vgg16-ssd", "mb1-ssd", "mb2-ssd-lite"), from its keys (either
    vgg16-ssd: with the ScaledL2Norm's ``scale`` or the BatchNorm's ``running_mean``)."""
    norm = (_SCALE, "source_layer_add_ons.0.running_mean")
    if "base_net.31.weight" in state_dict and any(key in state_dict for key in norm):
        return "vgg16-ssd"
    if "base_net.13.3.weight" in state_dict and "classification_headers.0.weight" in state_dict:
        return "mb1-ssd"
    if "base_net.1.conv.0.weight" in state_dict and "base_net.18.0.weight" in state_dict:
        return "mb2-ssd-lite"
    raise ValueError(f"qfgaohao state dict: expected one of its nets {sorted(_NETS)} (first keys "
                     f"{list(state_dict)[:4]}); its other nets (mb1-ssd-lite, mb3-ssd-lite, squeezenet-ssd-lite) "
                     "are not supported")


def to_ssd_zoo(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """qfgaohao state dict (any of :data:`_NETS`) -> ssd_zoo's keys for the matching registered model."""
    net = net_type(state_dict)
    rules = [(re.escape(_SCALE) + "$", lambda m: _L2NORM)] if net == "vgg16-ssd" else []
    return _rekey(state_dict, rules + _module_rules(_TABLES[net]), f"qfgaohao {net}")


def from_ssd_zoo(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """ssd_zoo state dict of a ``qfgaohao_*`` model (or any VGG16 SSD300) -> qfgaohao's keys (its ``net.load``)."""
    state = split_record(state_dict)[0]
    vgg = "backbone.features.conv1_1.weight" in state
    net = "vgg16-ssd" if vgg else "mb2-ssd-lite" if "backbone.features.0.0.weight" in state else "mb1-ssd"
    rules = [(re.escape(_L2NORM) + "$", lambda m: _SCALE)] if vgg else []
    return _rekey(state, rules + _module_rules({v: k for k, v in _TABLES[net].items()}), "ssd_zoo")


def fitting_model(state_dict: Mapping[str, Tensor]) -> tuple[str, dict[str, Any]]:
    """The registered model; for vgg16-ssd, the conv4_3 norm its file has (ScaledL2Norm or BatchNorm2d)."""
    net = net_type(state_dict)
    if net == "vgg16-ssd" and _SCALE not in state_dict:
        return _NETS[net], {"conv4_3_norm": "batch_norm"}
    return _NETS[net], {}


convert.register_layout(convert.Layout(
    LAYOUT, lambda sd: any(k.startswith("classification_headers.") for k in sd), to_ssd_zoo, from_ssd_zoo, "voc",
    fitting_model, "qfgaohao/pytorch-ssd: base_net.N, classification_headers.N", label_spaces=convert.VOC_OR_COCO_80))


# ---- the models ----------------------------------------------------------------------------------------------
def _build(name: str, backbone: Any, head: Any, spec: Any, mean: tuple, std: tuple, weights: Any,
           num_classes: int | None, **kwargs: Any) -> SSD:
    checkpoint = fetch_weights(weights, name, pretrained=kwargs.pop("pretrained", None))
    num_classes, _ = builder_config(checkpoint, num_classes, None)
    return assemble_ssd(lambda _: backbone(), head, spec, num_classes, checkpoint, mean=mean, std=std,
                        thresholds=_thresholds(num_classes), **kwargs)


def _mobilenet_v1() -> TimmBackbone:
    body = create_features("mobilenetv1_100", act_layer="relu")  # qfgaohao's MobileNetV1 uses ReLU, not ReLU6
    return TimmBackbone(body, input_size=300, grid=grid_sides(MOBILE_BOXES), strides=(16, 32),
                        extra_channels=(512, 256, 256, 256), extra_batch_norm=False)


@register_model
def qfgaohao_vgg16_ssd(*, weights: Any = None, num_classes: int | None = None, conv4_3_norm: str | None = None,
                       **kwargs: Any) -> SSD:
    """qfgaohao/pytorch-ssd's ``vgg16-ssd``: VGG16 SSD300, 8732 default boxes, its ``Predictor`` defaults.
    ``weights``: "VOC0712" (a file you download, see the entry) or a qfgaohao/ssd_zoo checkpoint path.
    ``conv4_3_norm``: "l2" (ScaledL2Norm: the published file, vgg_ssd.py as at 00f90007) or "batch_norm"
    (BatchNorm2d(512): ``create_vgg_ssd`` since it was made ONNX-friendly, as at d0465093); default: the weights'."""
    checkpoint = fetch_weights(weights, "qfgaohao_vgg16_ssd", pretrained=kwargs.pop("pretrained", None))
    if conv4_3_norm is None:
        batch_norm = checkpoint is not None and "backbone.bn4_3.running_mean" in checkpoint.state_dict
        conv4_3_norm = "batch_norm" if batch_norm else "l2"
    return _build("qfgaohao_vgg16_ssd", lambda: VGG16Backbone(300, conv4_3_norm), SSDHead, VGG_BOXES, VGG_MEAN,
                  VGG_STD, checkpoint, num_classes, **kwargs)


@register_model
def qfgaohao_mb1_ssd(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """qfgaohao/pytorch-ssd's ``mb1-ssd``: MobileNetV1 (ReLU) SSD300, 3000 default boxes; needs timm.
    ``weights``: "VOC0712" (a file you download, see the entry) or a qfgaohao/ssd_zoo checkpoint path."""
    return _build("qfgaohao_mb1_ssd", _mobilenet_v1, SSDHead, MOBILE_BOXES, MOBILE_MEAN, MOBILE_STD, weights,
                  num_classes, **kwargs)


@register_model
def qfgaohao_mb2_ssd_lite(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """qfgaohao/pytorch-ssd's ``mb2-ssd-lite``: MobileNetV2 SSDLite at 300, 3000 default boxes.
    ``weights``: "VOC0712" (a file you download, see the entry) or a qfgaohao/ssd_zoo checkpoint path."""
    return _build("qfgaohao_mb2_ssd_lite", MobileNetV2LiteBackbone, SeparableLiteHead, MOBILE_BOXES, MOBILE_MEAN,
                  MOBILE_STD, weights, num_classes, **kwargs)


# ---- the published weights (README "Pretrained Models"; VOC2007 test mAP with the 2007 11-point metric) -----------
_README = "https://github.com/qfgaohao/pytorch-ssd#pretrained-models"
_WHERE = ("the files are shared from the README's Pretrained Models section (" + _README + "), without a stable "
          "direct link: download {file} there, then ssd_zoo.build('{model}', weights='/path/to/{file}') (or put it "
          "in torch.hub's checkpoints folder under that name)")


# The qfgaohao/pytorch-ssd commits whose code the entries follow: the nets (vision/ssd/*.py), their configs
# (vision/ssd/config/*.py as at af2e79be: specs, image_mean/std, variances) and the README listing the files.
_COMMITS = {
    "qfgaohao_vgg16_ssd": "00f90007b1d54eaf377c4b81c4cca8a74a35493e (vision/ssd/vgg_ssd.py with ScaledL2Norm, as the "
                          "published file; create_vgg_ssd's BatchNorm2d variant as at d0465093 loads too)",
    "qfgaohao_mb1_ssd": "d0465093f2469ae1dd0711ccb0996293a52de51e (vision/ssd/mobilenetv1_ssd.py)",
    "qfgaohao_mb2_ssd_lite": "bc15b311a023cef5864e7000c34186cbd329bf6f (vision/ssd/mobilenet_v2_ssd_lite.py)",
}
_CONFIG_COMMIT = "af2e79bee33911868ddb9216d3cd195573916135"
_README_COMMIT = "eeaccd28f5139460353ca1dd46c648d5d54ad0e8"


def _entry(file: str, model: str, metric: float, recipe: str) -> Any:
    mobile = model != "qfgaohao_vgg16_ssd"
    return ssd_weights(
        # The link the README gave first (Google Cloud Storage, "models-hao"); tried once, with the error above.
        f"https://storage.googleapis.com/models-hao/{file}", model=model, input_size=300, layout=LAYOUT,
        num_classes=21, anchors="voc", categories=VOC_CATEGORIES, mean=MOBILE_MEAN if mobile else VGG_MEAN,
        std=MOBILE_STD if mobile else VGG_STD, dataset="VOC2007 trainval + VOC2012 trainval",
        metrics={"VOC2007-test": {"mAP": metric}}, metrics_source=_README, recipe=recipe,
        where_to_get=_WHERE.format(file=file, model=model), licence="MIT (per the GitHub repository)",
        source_commit=f"qfgaohao/pytorch-ssd@{_COMMITS[model]}; configs as at {_CONFIG_COMMIT[:8]}, README as at "
                      f"{_README_COMMIT[:8]}",
    )


_TRAIN = "https://github.com/qfgaohao/pytorch-ssd#training"


class Qfgaohao_VGG16_SSD_Weights(WeightsEnum):
    """qfgaohao/pytorch-ssd's ``vgg16-ssd-mp-0_7726.pth`` (a plain state dict, converted on load)."""

    VOC0712 = _entry("vgg16-ssd-mp-0_7726.pth", "qfgaohao_vgg16_ssd", 77.26, _TRAIN)
    DEFAULT = VOC0712


class Qfgaohao_MB1_SSD_Weights(WeightsEnum):
    """qfgaohao/pytorch-ssd's ``mobilenet-v1-ssd-mp-0_675.pth`` (a plain state dict, converted on load)."""

    VOC0712 = _entry("mobilenet-v1-ssd-mp-0_675.pth", "qfgaohao_mb1_ssd", 67.55, _TRAIN)
    DEFAULT = VOC0712


class Qfgaohao_MB2_SSD_Lite_Weights(WeightsEnum):
    """qfgaohao/pytorch-ssd's ``mb2-ssd-lite-mp-0_686.pth`` (a plain state dict, converted on load)."""

    VOC0712 = _entry("mb2-ssd-lite-mp-0_686.pth", "qfgaohao_mb2_ssd_lite", 68.6, _TRAIN)
    DEFAULT = VOC0712


register_weights("qfgaohao_vgg16_ssd", Qfgaohao_VGG16_SSD_Weights)
register_weights("qfgaohao_mb1_ssd", Qfgaohao_MB1_SSD_Weights)
register_weights("qfgaohao_mb2_ssd_lite", Qfgaohao_MB2_SSD_Lite_Weights)
