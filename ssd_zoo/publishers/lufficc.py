"""lufficc/SSD (MIT licence, https://github.com/lufficc/SSD): its VGG16 SSD300 and SSD512, VOC and COCO.

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
- files: ``CheckPointer.save`` writes ``{"model": state_dict, ...}`` (``module.`` never: it unwraps DDP).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor
from torchvision.models import WeightsEnum

from .. import convert
from ..models.assemble import assemble_ssd
from ..models.head import SSDHead
from ..models.ssd import SSD
from ..models.vgg import VGG16Backbone
from ..ops.default_boxes import DefaultBoxSpec, num_default_boxes, spec_from_min_max
from ..published import VOC_CATEGORIES, register_weights, ssd_weights
from ..registry import register_model
from ..weights import builder_config, default_categories, fetch_weights

LAYOUT = "lufficc"
MEAN = (123 / 255, 117 / 255, 104 / 255)  # PIXEL_MEAN on RGB 0..255, as ssd_zoo's 0..1 scale
STD = (1 / 255, 1 / 255, 1 / 255)  # no scaling: 0..255 values minus the mean
# lufficc's 81 COCO classes (COCODataset.class_names: contiguous ids in sorted COCO category id order) are
# torchvision's 91 without the unused ids, i.e. ssd_zoo's default names for 81 classes.
COCO80_CATEGORIES = default_categories(81)

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
# (the builder sets topk_candidates to the number of default boxes).
THRESHOLDS = {"score_thresh": 0.01, "nms_thresh": 0.45, "detections_per_img": 100}

# ---- the layout: lufficc key prefix <-> ssd.pytorch key prefix (same modules, same order, same tensors) --------
_PREFIXES = {"backbone.vgg.": "vgg.", "backbone.l2_norm.": "L2Norm.", "backbone.extras.": "extras.",
             "box_head.predictor.cls_headers.": "conf.", "box_head.predictor.reg_headers.": "loc."}


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
                         f"prefixes {sorted(table)}); ssd_zoo loads lufficc's vgg_ssd300_* and vgg_ssd512_* checkpoints")
    return out


def to_ssd_zoo(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """lufficc VGG16 SSD300/SSD512 state dict -> ssd_zoo's (``ssd300/512`` by its 6 or 7 head levels)."""
    return convert.from_ssd_pytorch(_swap_prefixes(state_dict, _PREFIXES, "lufficc"))


def from_ssd_zoo(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """ssd_zoo VGG16 SSD state dict -> lufficc's (what its ``CheckPointer`` loads from ``checkpoint["model"]``)."""
    return _swap_prefixes(convert.to_ssd_pytorch(state_dict), {v: k for k, v in _PREFIXES.items()}, "ssd_zoo")


def fitting_model(state_dict: Mapping[str, Tensor]) -> tuple[str, dict[str, Any]]:
    """``(registered model, keywords)`` for a lufficc file: SSD300 or SSD512 by head levels, COCO boxes for 81
    classes (its COCO configs) else VOC's."""
    levels = convert.num_levels(state_dict, "box_head.predictor.reg_headers.{}.weight")
    names = {6: "lufficc_vgg_ssd300", 7: "lufficc_vgg_ssd512"}
    if levels not in names or "backbone.vgg.0.weight" not in state_dict:
        raise ValueError(f"lufficc state dict: expected the VGG16 backbone (backbone.vgg.N) and 6 or 7 head levels, "
                         f"found {levels} levels and first keys {list(state_dict)[:4]}; ssd_zoo loads lufficc's "
                         "vgg_ssd300_* and vgg_ssd512_* (not its MobileNet or EfficientNet) checkpoints")
    return names[levels], {}


convert.register_layout(convert.Layout(
    LAYOUT, lambda sd: any(k.startswith("box_head.predictor.cls_headers.") for k in sd), to_ssd_zoo, from_ssd_zoo,
    None, fitting_model, "lufficc/SSD: box_head.predictor.cls_headers.N"))


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
    return assemble_ssd(VGG16Backbone(input_size), SSDHead, spec, num_classes, checkpoint, mean=MEAN, std=STD,
                        explicit_boxes=anchors is not None, **{**defaults, **kwargs})


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
_SOURCE = "https://github.com/lufficc/SSD#model-zoo"


def _entry(file: str, model: str, size: int, dataset: str, metric: float) -> Any:
    voc = dataset == "voc"
    return ssd_weights(
        _RELEASE + file, model=model, input_size=size, layout=LAYOUT, num_classes=21 if voc else 81, anchors=dataset,
        categories=VOC_CATEGORIES if voc else COCO80_CATEGORIES, mean=MEAN, std=STD,
        dataset="VOC2007 trainval + VOC2012 trainval" if voc else "COCO2014 train + valminusminival (trainval35k)",
        metrics={"VOC2007-test": {"mAP": metric}} if voc else {"COCO-minival2014": {"box_map": metric}},
        metrics_source=_SOURCE, recipe=f"https://github.com/lufficc/SSD/blob/master/configs/{file[:-4]}.yaml",
        licence="MIT",
    )


class Lufficc_VGG_SSD300_Weights(WeightsEnum):
    """lufficc/SSD's VGG16 SSD300 release files (``{"model": state_dict}``, converted on load)."""

    VOC0712 = _entry("vgg_ssd300_voc0712.pth", "lufficc_vgg_ssd300", 300, "voc", 77.7)
    COCO_TRAINVAL35K = _entry("vgg_ssd300_coco_trainval35k.pth", "lufficc_vgg_ssd300", 300, "coco", 25.2)
    DEFAULT = VOC0712


class Lufficc_VGG_SSD512_Weights(WeightsEnum):
    """lufficc/SSD's VGG16 SSD512 release files (``{"model": state_dict}``, converted on load)."""

    VOC0712 = _entry("vgg_ssd512_voc0712.pth", "lufficc_vgg_ssd512", 512, "voc", 80.7)
    COCO_TRAINVAL35K = _entry("vgg_ssd512_coco_trainval35k.pth", "lufficc_vgg_ssd512", 512, "coco", 29.0)
    DEFAULT = VOC0712


register_weights("lufficc_vgg_ssd300", Lufficc_VGG_SSD300_Weights)
register_weights("lufficc_vgg_ssd512", Lufficc_VGG_SSD512_Weights)
