"""lufficc/SSD (MIT licence, https://github.com/lufficc/SSD): its VGG16 SSD300 and SSD512 (VOC and COCO), and the
layout of all its release-1.2 files (the MobileNet and EfficientNet models are in :mod:`.lufficc_mobile`).

Read from its code (``ssd/modeling/backbone/vgg.py``, ``box_head/box_predictor.py``, ``anchors/prior_box.py``,
``utils/box_utils.py``, ``config/defaults.py``, ``configs/vgg_ssd*.yaml``, ``utils/checkpoint.py``):

- architecture: ssd.pytorch's VGG16 (``backbone.vgg.N``: conv4_3 at 21, pool5 30, fc6 31, fc7 33), L2Norm on
  conv4_3 (``backbone.l2_norm.weight``, eps 1e-10 on the norm), the extras as one list of convs each followed
  by a ReLU (``backbone.extras.N``), 3x3 predictors (``box_head.predictor.cls_headers.N`` / ``reg_headers.N``,
  channel = box * C + class) - exactly ssd_zoo's :class:`~ssd_zoo.models.vgg.VGG16Backbone` and
  :class:`~ssd_zoo.models.head.SSDHead`, so the layout is ssd.pytorch's keys under other prefixes;
- default boxes: ``MODEL.PRIORS`` of each config, per location min square, sqrt(min * max) square, then
  (w*sqrt(r), h/sqrt(r)) and its transpose per ratio; ``CLIP: True`` clamps centres and sizes (clip="all");
  VOC512's last max size is 537.65 (not the paper's 537.6), COCO's boxes are 21..315 (300) / 20.48..542.72 (512);
- input: PIL RGB, ``cv2.resize`` to 300 or 512, minus ``PIXEL_MEAN`` (123, 117, 104) on 0..255, no scaling;
- output: softmax, variances 0.1 / 0.2; evaluation: score > 0.01, NMS IoU 0.45 per class with no cap per class
  (``MAX_PER_CLASS: -1``), the best 100 per image (``MAX_PER_IMAGE``);
- files: ``CheckPointer.save`` writes ``{"model": state_dict, ...}`` (``module.`` never: it unwraps DDP); the
  backbone is told by its keys (``backbone.vgg.N``, ``backbone.features.18`` MobileNetV2, ``backbone.features.16``
  MobileNetV3, ``backbone._conv_stem`` EfficientNet), the SSDLite heads' ``SeparableConv2d`` by ``.conv.N``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from torchvision.models import WeightsEnum

from ssd_zoo.weights import convert
from ssd_zoo.models.record import split_record
from ssd_zoo.models.builder import assemble_ssd
from ssd_zoo.models.head import SSDHead
from ssd_zoo.models.mobilenet_v3_dli14 import EXTRAS as MOBILE_V3_EXTRAS
from ssd_zoo.models.mobilenet_v3_dli14 import LARGE, STEM_CHANNELS, make_divisible
from ssd_zoo.models.ssd import SSD
from ssd_zoo.models.vgg import VGG16Backbone
from ssd_zoo.ops.default_boxes import DefaultBoxSpec, num_default_boxes, spec_from_min_max
from ssd_zoo.weights.published import COCO80_CATEGORIES, VOC_CATEGORIES, register_weights, ssd_weights
from ssd_zoo.registry import register_model
from ssd_zoo.weights.resolve import builder_config, fetch_weights

LAYOUT = "lufficc"
MEAN = (123 / 255, 117 / 255, 104 / 255)  # PIXEL_MEAN on RGB 0..255, as ssd_zoo's 0..1 scale
STD = (1 / 255, 1 / 255, 1 / 255)  # no scaling: 0..255 values minus the mean
# lufficc's 81 COCO classes (COCODataset.class_names: contiguous ids in sorted COCO category id order) are
# torchvision's 91 without the unused ids: published.COCO80_CATEGORIES.

_RATIOS_300 = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
_RATIOS_512 = ((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,))
_STEPS_300, _STEPS_512 = (8, 16, 32, 64, 100, 300), (8, 16, 32, 64, 128, 256, 512)
# (input size, dataset) -> MODEL.PRIORS of configs/vgg_ssd{300,512}_{voc0712,coco_trainval35k}.yaml.
BOXES: dict[tuple[int, str], DefaultBoxSpec] = {
    (300, "voc"): spec_from_min_max(300, (30, 60, 111, 162, 213, 264), (60, 111, 162, 213, 264, 315), _RATIOS_300,
                                    _STEPS_300),
    (300, "coco"): spec_from_min_max(300, (21, 45, 99, 153, 207, 261), (45, 99, 153, 207, 261, 315), _RATIOS_300,
                                     _STEPS_300),
    (512, "voc"): spec_from_min_max(512, (35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8),
                                    (76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.65), _RATIOS_512, _STEPS_512),
    (512, "coco"): spec_from_min_max(512, (20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8),
                                     (51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72), _RATIOS_512, _STEPS_512),
}
# TEST.* of config/defaults.py: score > 0.01, NMS 0.45, 100 per image; every box above the score enters NMS
# (the builder sets topk_candidates to the number of default boxes); PostProcessor clips no box before NMS.
THRESHOLDS = {"score_thresh": 0.01, "nms_thresh": 0.45, "detections_per_img": 100, "clip_before_nms": False}

# ---- the layout -------------------------------------------------------------------------------------------------
# VGG16: lufficc key prefix <-> ssd.pytorch key prefix (same modules, same order, same tensors).
_PREFIXES = {"backbone.vgg.": "vgg.", "backbone.l2_norm.": "L2Norm.", "backbone.extras.": "extras.",
             "box_head.predictor.cls_headers.": "conf.", "box_head.predictor.reg_headers.": "loc."}
_SUPPORTED = ("ssd_zoo loads lufficc's vgg_ssd300_*, vgg_ssd512_*, mobilenet_v2_ssd320_*, mobilenet_v3_ssd320_* and "
              "efficient_net_b3_ssd300_* checkpoints")


def _swap_prefixes(state_dict: Mapping[str, Tensor], table: dict[str, str], source: str) -> dict[str, Tensor]:
    out, unknown = {}, []
    for key, value in state_dict.items():
        prefix = next((p for p in table if key.startswith(p)), None)
        if prefix is None:
            unknown.append(key)
        else:
            out[table[prefix] + key[len(prefix):]] = value
    if unknown:
        raise ValueError(f"{source} state dict: keys {unknown[:8]} fit no part of lufficc's VGG16 SSD (expected "
                         f"prefixes {sorted(table)}); {_SUPPORTED}")
    return out


def _head_table(levels: int, lite: bool) -> dict[str, str]:
    """lufficc predictor module -> ssd_zoo's: 3x3 convs, or (SSDLite) SeparableConv2d ``conv`` = (depthwise, BN,
    ReLU6, pointwise) on every level but the last, a 1x1 conv."""
    table = {}
    for level in range(levels):
        for theirs, ours in (("cls_headers", "classification"), ("reg_headers", "regression")):
            key = f"box_head.predictor.{theirs}.{level}"
            if lite and level < levels - 1:
                for index, part in (("0", "depthwise"), ("1", "bn"), ("3", "pointwise")):
                    table[f"{key}.conv.{index}"] = f"head.{ours}.{level}.{part}"
            else:
                table[key] = f"head.{ours}.{level}"
    return table


def _mobilenet_v3_table() -> dict[str, str]:
    """lufficc's MobileNetV3 (``features.0`` stem, ``features.1..15`` blocks, ``features.16`` last conv, each block
    one ``conv`` Sequential) -> :class:`~ssd_zoo.models.mobilenet_v3_dli14.MobileNetV3DLi14Backbone`'s names."""
    table = {"backbone.features.0.0": "backbone.stem.conv", "backbone.features.0.1": "backbone.stem.bn",
             f"backbone.features.{len(LARGE) + 1}.0": "backbone.last.conv",
             f"backbone.features.{len(LARGE) + 1}.1": "backbone.last.bn"}
    # Sequential index -> part: (pw, BN, act, dw, BN, SE, act, pwl, BN), without expansion (dw, BN, act, SE, pwl, BN).
    expanded = {"0": "expand.conv", "1": "expand.bn", "3": "depthwise.conv", "4": "depthwise.bn", "5.fc.0": "se.reduce",
                "5.fc.2": "se.expand", "7": "project.conv", "8": "project.bn"}
    plain = {"0": "depthwise.conv", "1": "depthwise.bn", "3.fc.0": "se.reduce", "3.fc.2": "se.expand",
             "4": "project.conv", "5": "project.bn"}
    blocks, in_ch = [], STEM_CHANNELS
    for _, expansion, out_ch, se, _, _ in LARGE:
        blocks.append((make_divisible(in_ch * expansion) != in_ch, se))
        in_ch = out_ch
    named = [(f"backbone.features.{k + 1}", f"backbone.blocks.{k}", b) for k, b in enumerate(blocks)]
    named += [(f"backbone.extras.{b}", f"backbone.extras.{b}", (True, True)) for b in range(len(MOBILE_V3_EXTRAS))]
    for theirs, ours, (expands, se) in named:
        for index, part in (expanded if expands else plain).items():
            if se or not part.startswith("se."):
                table[f"{theirs}.conv.{index}"] = f"{ours}.{part}"
    return {**table, **_head_table(6, lite=True)}


# EfficientNet-B3's blocks per stage: ceil(1.4 * (1, 2, 2, 3, 3, 4, 1)), lufficc's ``_blocks.N`` numbered across them.
_B3_REPEATS = (2, 3, 3, 5, 5, 6, 2)


def _efficient_net_b3_table() -> dict[str, str]:
    """lufficc's EfficientNet (lukemelas' EfficientNet-PyTorch 0.1 names) -> timm ``tf_efficientnet_b3`` in a
    :class:`~ssd_zoo.models.timm_backbone.TimmBackbone` (``backbone.body.*``, extras ``reduce``/``shrink``)."""
    table = {"backbone._conv_stem": "backbone.body.conv_stem", "backbone._bn0": "backbone.body.bn1"}
    # MBConvBlock part -> timm's: InvertedResidual, or (stage 0, expand ratio 1) DepthwiseSeparableConv.
    expanded = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
                "_bn2": "bn3"}
    plain = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
             "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}
    blocks = [(stage, i) for stage, count in enumerate(_B3_REPEATS) for i in range(count)]
    for n, (stage, i) in enumerate(blocks):
        for theirs, ours in (expanded if stage > 0 else plain).items():
            table[f"backbone._blocks.{n}.{theirs}"] = f"backbone.body.blocks.{stage}.{i}.{ours}"
    for b in range(3):  # Sequential(1x1, ReLU, 3x3, ReLU)
        table[f"backbone.extras.{b}.0"] = f"backbone.extras.{b}.reduce.conv"
        table[f"backbone.extras.{b}.2"] = f"backbone.extras.{b}.shrink.conv"
    return {**table, **_head_table(6, lite=False)}


def _rename_modules(state_dict: Mapping[str, Tensor], table: dict[str, str], kept: str | None,
                    source: str) -> dict[str, Tensor]:
    """Rename each ``module.param`` key by ``table[module]`` (keys under ``kept`` stay as they are); keys of
    other modules raise ValueError."""
    out, unknown = {}, []
    for key, value in state_dict.items():
        module, param = key.rsplit(".", 1)
        if module in table:
            out[f"{table[module]}.{param}"] = value
        elif kept is not None and key.startswith(kept):
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{source} state dict: keys {unknown[:8]} fit no part of the model; {_SUPPORTED}")
    return out


@dataclass(frozen=True)
class _Backbone:
    """One of lufficc's SSDs other than VGG16: the registered model, a key only it has (in lufficc's layout,
    in ssd_zoo's), the module table lufficc -> ssd_zoo, and a key prefix both sides name alike (or None)."""

    model: str
    theirs: str
    ours: str
    table: dict[str, str]
    kept: str | None = None


_BACKBONES = (
    # lufficc's MobileNetV2 has torchvision's module names (``features.N``, the extra InvertedResiduals too).
    _Backbone("lufficc_mobilenet_v2_ssd320", "backbone.features.18.0.weight", "backbone.features.18.0.weight",
              _head_table(6, lite=True), kept="backbone."),
    _Backbone("lufficc_mobilenet_v3_ssd320", f"backbone.features.{len(LARGE) + 1}.0.weight",
              "backbone.stem.conv.weight", _mobilenet_v3_table()),
    _Backbone("lufficc_efficient_net_b3_ssd300", "backbone._conv_stem.weight", "backbone.body.conv_stem.weight",
              _efficient_net_b3_table()),
)


def _backbone(state_dict: Mapping[str, Tensor], side: str) -> _Backbone | None:
    """The non-VGG model ``state_dict`` (lufficc's layout for side "theirs", ssd_zoo's for "ours") is, or None."""
    return next((b for b in _BACKBONES if getattr(b, side) in state_dict), None)


def to_ssd_zoo(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """lufficc state dict -> ssd_zoo's, for the model :func:`fitting_model` names."""
    backbone = _backbone(state_dict, "theirs")
    if backbone is None:
        return convert.from_ssd_pytorch(_swap_prefixes(state_dict, _PREFIXES, "lufficc"))
    return _rename_modules(state_dict, backbone.table, backbone.kept, f"lufficc ({backbone.model})")


def from_ssd_zoo(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """ssd_zoo state dict of a ``lufficc_*`` model -> lufficc's (what its ``CheckPointer`` loads from
    ``checkpoint["model"]``)."""
    state = split_record(state_dict)[0]
    backbone = _backbone(state, "ours")
    if backbone is None:
        return _swap_prefixes(convert.to_ssd_pytorch(state), {v: k for k, v in _PREFIXES.items()}, "ssd_zoo")
    inverse = {ours: theirs for theirs, ours in backbone.table.items()}
    return _rename_modules(state, inverse, backbone.kept, "ssd_zoo")


def fitting_model(state_dict: Mapping[str, Tensor]) -> tuple[str, dict[str, Any]]:
    """``(registered model, keywords)`` for a lufficc file: its backbone's model; for VGG16 SSD300 or SSD512 by
    head levels (COCO boxes for 81 classes, its COCO configs, else VOC's)."""
    backbone = _backbone(state_dict, "theirs")
    if backbone is not None:
        return backbone.model, {}
    levels = convert.num_levels(state_dict, "box_head.predictor.reg_headers.{}.weight")
    names = {6: "lufficc_vgg_ssd300", 7: "lufficc_vgg_ssd512"}
    if levels not in names or "backbone.vgg.0.weight" not in state_dict:
        raise ValueError(f"lufficc state dict: expected the VGG16 (backbone.vgg.N), MobileNetV2, MobileNetV3 or "
                         f"EfficientNet-B3 backbone, found {levels} head levels and first keys {list(state_dict)[:4]}; "
                         f"{_SUPPORTED}")
    return names[levels], {}


convert.register_layout(convert.Layout(
    LAYOUT, lambda sd: any(k.startswith("box_head.predictor.cls_headers.") for k in sd), to_ssd_zoo, from_ssd_zoo,
    None, fitting_model, "lufficc/SSD: box_head.predictor.cls_headers.N", label_spaces=convert.VOC_OR_COCO_80))


# ---- the models ----------------------------------------------------------------------------------------------
def _lufficc_vgg(name: str, input_size: int, weights: Any, num_classes: int | None, anchors: str | None,
                 **kwargs: Any) -> SSD:
    checkpoint = fetch_weights(weights, name, pretrained=kwargs.pop("pretrained", None))
    known = num_classes or (checkpoint.num_classes if checkpoint is not None else None)
    num_classes, dataset = builder_config(checkpoint, num_classes, anchors, "coco" if known == 81 else "voc")
    if (input_size, dataset) not in BOXES:
        raise ValueError(f"{name}: anchors={dataset!r}: expected 'voc' or 'coco' (lufficc's configs)")
    spec = BOXES[(input_size, dataset)]
    defaults = {**THRESHOLDS, "topk_candidates": num_default_boxes(spec)}
    return assemble_ssd(lambda _: VGG16Backbone(input_size), SSDHead, spec, num_classes, checkpoint, mean=MEAN,
                        std=STD, explicit_boxes=anchors is not None, thresholds=defaults, **kwargs)


@register_model
def lufficc_vgg_ssd300(*, weights: Any = None, num_classes: int | None = None, anchors: str | None = None,
                       **kwargs: Any) -> SSD:
    """lufficc/SSD's ``vgg_ssd300``: VGG16 SSD300, 8732 default boxes, its post-processing (100 per image).

    ``weights``: "VOC0712" (= "DEFAULT"), "COCO_TRAINVAL35K", or a lufficc/ssd_zoo checkpoint file or URL.
    ``anchors``: lufficc's "voc" or "coco" default boxes (default: "coco" for 81 classes, else "voc").
    """
    return _lufficc_vgg("lufficc_vgg_ssd300", 300, weights, num_classes, anchors, **kwargs)


@register_model
def lufficc_vgg_ssd512(*, weights: Any = None, num_classes: int | None = None, anchors: str | None = None,
                       **kwargs: Any) -> SSD:
    """lufficc/SSD's ``vgg_ssd512``: VGG16 SSD512, 24564 default boxes, its post-processing (100 per image).

    ``weights``: "VOC0712" (= "DEFAULT"), "COCO_TRAINVAL35K", or a lufficc/ssd_zoo checkpoint file or URL.
    ``anchors``: lufficc's "voc" or "coco" default boxes (default: "coco" for 81 classes, else "voc").
    """
    return _lufficc_vgg("lufficc_vgg_ssd512", 512, weights, num_classes, anchors, **kwargs)


# ---- the published weights (release 1.2, README "MODEL ZOO") -----------------------------------------------------
_RELEASE = "https://github.com/lufficc/SSD/releases/download/1.2/"
# The lufficc/SSD commit whose README "MODEL ZOO" lists the release-1.2 files and whose configs and code the entries
# follow (the MobileNetV2 files name their own: the config's STRIDES changed over their life).
RELEASE_COMMIT = "accc3109e5af5cb3efd19fc29b29d30f324bd05e"
_SOURCE = "https://github.com/lufficc/SSD#model-zoo"


def release_entry(file: str, model: str, size: int, dataset: str | None, metric: float,
                  config: str | None = None, anchors: str | None = None, commit: str = RELEASE_COMMIT) -> Any:
    """One release file; ``dataset`` "voc"/"coco" also names its default boxes (None: the model's own, VOC data);
    ``config``: its configs/*.yaml name where it is not the file's; ``anchors``: the model's preset the file was
    trained with, where not ``dataset``; ``commit``: the lufficc/SSD commit whose config and code the entry follows
    (``meta["source_commit"]``)."""
    voc = dataset != "coco"
    config = config or file[:-4]
    return ssd_weights(
        _RELEASE + file, model=model, input_size=size, layout=LAYOUT, num_classes=21 if voc else 81,
        anchors=anchors or dataset, source_commit=f"lufficc/SSD@{commit} (configs/{config}.yaml)",
        categories=VOC_CATEGORIES if voc else COCO80_CATEGORIES, mean=MEAN, std=STD,
        dataset="VOC2007 trainval + VOC2012 trainval" if voc else "COCO2014 train + valminusminival (trainval35k)",
        metrics={"VOC2007-test": {"mAP": metric}} if voc else {"COCO-minival2014": {"box_map": metric}},
        metrics_source=_SOURCE, recipe=f"https://github.com/lufficc/SSD/blob/{commit}/configs/{config}.yaml",
        licence="MIT",
    )


class Lufficc_VGG_SSD300_Weights(WeightsEnum):
    """lufficc/SSD's VGG16 SSD300 release files (``{"model": state_dict}``, converted on load)."""

    VOC0712 = release_entry("vgg_ssd300_voc0712.pth", "lufficc_vgg_ssd300", 300, "voc", 77.7)
    COCO_TRAINVAL35K = release_entry("vgg_ssd300_coco_trainval35k.pth", "lufficc_vgg_ssd300", 300, "coco", 25.2)
    DEFAULT = VOC0712


class Lufficc_VGG_SSD512_Weights(WeightsEnum):
    """lufficc/SSD's VGG16 SSD512 release files (``{"model": state_dict}``, converted on load)."""

    VOC0712 = release_entry("vgg_ssd512_voc0712.pth", "lufficc_vgg_ssd512", 512, "voc", 80.7)
    COCO_TRAINVAL35K = release_entry("vgg_ssd512_coco_trainval35k.pth", "lufficc_vgg_ssd512", 512, "coco", 29.0)
    DEFAULT = VOC0712


register_weights("lufficc_vgg_ssd300", Lufficc_VGG_SSD300_Weights)
register_weights("lufficc_vgg_ssd512", Lufficc_VGG_SSD512_Weights)
