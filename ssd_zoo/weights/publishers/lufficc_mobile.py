"""lufficc/SSD's (MIT licence) release-1.2 models on MobileNetV2, MobileNetV3 and EfficientNet-B3, VOC (21 classes).

Their files are in lufficc's layout (:mod:`.lufficc`, which converts them). Read from its code
(``ssd/modeling/backbone/{mobilenet,mobilenetv3}.py``, ``backbone/efficient_net/*``, ``box_head/box_predictor.py``,
``layers/separable_conv.py``, ``anchors/prior_box.py``, ``config/defaults.py``) and configs
(``configs/mobilenet_v2_ssd320_voc0712.yaml``, ``mobilenet_v3_ssd320_voc0712.yaml``,
``efficient_net_b3_ssd300_voc0712.yaml``):

- ``mobilenet_v2_ssd320``: torchvision's MobileNetV2 key for key (ReLU6, BN eps 1e-5), maps after ``features[:14]``
  (96 channels, stride 16) and after the last 1x1 conv (1280), four inverted-residual extras (512/256/256/64,
  expansion 0.2/0.25/0.5/0.25) - :class:`~ssd_zoo.models.mobilenet_v2_ssdlite.MobileNetV2LiteBackbone` with
  ``stride16_map="block"``; ``SSDLiteBoxPredictor`` (separable 3x3 with a depthwise bias, BN, ReLU6, 1x1; a 1x1
  conv on the last level) - :class:`~ssd_zoo.models.mobilenet_v2_ssdlite.SeparableLiteHead`;
- ``mobilenet_v3_ssd320``: d-li14's MobileNetV3-Large (:mod:`ssd_zoo.models.mobilenet_v3_dli14`: SE before the
  activation, no library has it), maps after ``features[:13]`` (112, stride 16) and the last 1x1 conv (960), the
  same SSDLite head. lufficc's code has had two versions of the extras (depthwise 1x1 first, 3x3 now); which one
  trained ``mobilenet_v3_ssd320_voc0712.pth`` is not recorded, so the builder reads it from the weights' shapes;
- both at 320: ``MODEL.PRIORS`` maps 20/10/5/3/2/1, boxes 60..330 px, ratios 2 and 3 everywhere, steps
  16/32/64/107/160/320. V2's config had qfgaohao's 300-input steps 16/32/64/100/150/300 until lufficc/SSD commit
  c16e459 ("fix #137", 2020-03-13) changed them to 107/160/320, in the same commit that pointed the README's
  MobileNetV2 row at ``mobilenet_v2_ssd320_voc0712_v2.pth`` (68.9 mAP): that file is trained with the new steps,
  the earlier ``mobilenet_v2_ssd320_voc0712.pth`` (68.8) with the old ones (whose last three levels' centres are
  not the cells' centres, as in lufficc's own priors then). ``anchors="steps320"`` / ``"steps300"`` choose them;
- ``efficient_net_b3_ssd300``: lukemelas' EfficientNet-B3 (0.1: TF "same" padding, BN eps 1e-3, swish) is
  timm's ``tf_efficientnet_b3`` key for key; maps after blocks 7, 17, 25 (48@38, 136@19, 384@10, timm's strides
  8/16/32), extras 1x1 + ReLU then 3x3 + ReLU (10 -> 5 stride 2, 5 -> 3 and 3 -> 1 valid), 3x3 predictors; its
  config sets no ``PRIORS``, so the defaults: the SSD300 VOC boxes of the VGG model;
- all: ``PIXEL_MEAN`` (123, 117, 104) subtracted on 0..255 RGB, no scaling (these configs set no other), softmax,
  variances 0.1 / 0.2, lufficc's evaluation thresholds (score 0.01, NMS 0.45, 100 per image).
"""
from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from torch import nn
from torchvision.models import WeightsEnum

from ssd_zoo.models.builder import assemble_ssd
from ssd_zoo.models.head import SSDHead
from ssd_zoo.models.mobilenet_v2_ssdlite import MobileNetV2LiteBackbone, SeparableLiteHead
from ssd_zoo.models.mobilenet_v3_dli14 import MobileNetV3DLi14Backbone
from ssd_zoo.models.ssd import SSD
from ssd_zoo.models.timm_backbone import TimmBackbone, create_features
from ssd_zoo.ops.default_boxes import DefaultBoxSpec, grid_sides, num_default_boxes, spec_from_min_max
from ssd_zoo.weights.published import register_weights
from ssd_zoo.registry import register_model
from ssd_zoo.weights.resolve import Checkpoint, builder_config, fetch_weights
from ssd_zoo.weights.publishers.lufficc import BOXES, MEAN, STD, THRESHOLDS, release_entry

_MIN, _MAX = (60, 105, 150, 195, 240, 285), (105, 150, 195, 240, 285, 330)
MOBILE_FEATURE_MAPS = (20, 10, 5, 3, 2, 1)  # MODEL.PRIORS.FEATURE_MAPS of both configs (= the maps at 320)
# configs/mobilenet_v3_ssd320_voc0712.yaml, and mobilenet_v2_ssd320_voc0712.yaml since c16e459 (the _v2 file).
MOBILE_V3_BOXES = dataclasses.replace(spec_from_min_max(320, _MIN, _MAX, ((2, 3),) * 6, (16, 32, 64, 107, 160, 320)),
                                      grid=MOBILE_FEATURE_MAPS)
# mobilenet_v2_ssd320_voc0712.yaml before c16e459 (the first file): steps 100/150/300 would derive maps 4/3/2 at
# 320, so the spec carries the config's maps.
MOBILE_V2_STEPS300_BOXES = dataclasses.replace(
    spec_from_min_max(320, _MIN, _MAX, ((2, 3),) * 6, (16, 32, 64, 100, 150, 300)), grid=MOBILE_FEATURE_MAPS)
# The V2 model's default-box presets (``anchors=``): "steps320" (c16e459 and later; the default) or "steps300".
MOBILE_V2_BOXES = {"steps320": MOBILE_V3_BOXES, "steps300": MOBILE_V2_STEPS300_BOXES}
_V2_FILES = {"mobilenet_v2_ssd320_voc0712_v2.pth": "steps320", "mobilenet_v2_ssd320_voc0712.pth": "steps300"}
EFFICIENT_NET_BOXES = BOXES[(300, "voc")]
# EXTRAS['efficientnet-b3']: the 3x3 conv of each extra block as (stride, padding); 1x1 reductions to 128.
_B3_EXTRA_GEOMETRY = ((2, 1), (1, 0), (1, 0))


def _build(name: str, backbone: Callable[[Checkpoint | None], nn.Module], head: Any, spec: DefaultBoxSpec,
           weights: Any, num_classes: int | None, **kwargs: Any) -> SSD:
    checkpoint = fetch_weights(weights, name, pretrained=kwargs.pop("pretrained", None))
    num_classes, _ = builder_config(checkpoint, num_classes, None)
    # lufficc's evaluation settings; every box above the score enters NMS (topk = all default boxes).
    defaults = {**THRESHOLDS, "topk_candidates": num_default_boxes(spec)}
    return assemble_ssd(lambda _: backbone(checkpoint), head, spec, num_classes, checkpoint, mean=MEAN, std=STD,
                        thresholds=defaults, **kwargs)


def _mobilenet_v3(checkpoint: Checkpoint | None, extra_kernel: int | None) -> MobileNetV3DLi14Backbone:
    """The backbone with the extras' depthwise kernel asked for, else the weights', else lufficc's current 3."""
    weight = checkpoint.state_dict.get("backbone.extras.0.depthwise.conv.weight") if checkpoint is not None else None
    return MobileNetV3DLi14Backbone(extra_kernel or (weight.shape[-1] if weight is not None else 3))


def _efficient_net_b3(checkpoint: Checkpoint | None) -> TimmBackbone:
    return TimmBackbone(create_features("tf_efficientnet_b3"), input_size=300, grid=grid_sides(EFFICIENT_NET_BOXES),
                        strides=(8, 16, 32), extra_channels=(256, 256, 256), extra_batch_norm=False,
                        extra_geometry=_B3_EXTRA_GEOMETRY)


def _v2_boxes(checkpoint: Checkpoint | None, anchors: str | None) -> DefaultBoxSpec:
    """The caller's ``anchors``, else the named entry's, else a release file's by its name (lufficc's two files
    differ in name only), else "steps320"; ValueError for another name or one that contradicts named weights."""
    if checkpoint is not None and checkpoint.weights is not None and anchors not in (None, checkpoint.anchors):
        raise ValueError(f"anchors={anchors!r} conflicts with weights {checkpoint.name}, trained with "
                         f"anchors={checkpoint.anchors!r}")
    if anchors is None and checkpoint is not None:
        anchors = checkpoint.anchors or _V2_FILES.get(PurePath(urllib.parse.urlparse(checkpoint.source).path).name)
    anchors = anchors or "steps320"
    if anchors not in MOBILE_V2_BOXES:
        raise ValueError(f"lufficc_mobilenet_v2_ssd320: anchors={anchors!r}: expected one of {sorted(MOBILE_V2_BOXES)} "
                         "(steps 16/32/64/107/160/320 since lufficc/SSD c16e459, 100/150/300 before)")
    return MOBILE_V2_BOXES[anchors]


@register_model
def lufficc_mobilenet_v2_ssd320(*, weights: Any = None, num_classes: int | None = None, anchors: str | None = None,
                                **kwargs: Any) -> SSD:
    """lufficc/SSD's ``mobilenet_v2_ssd320``: MobileNetV2 SSDLite at 320, 3234 default boxes.
    ``weights``: "VOC0712" (= "DEFAULT", the ``_v2`` file), "VOC0712_STEPS300" (the first file) or a lufficc/ssd_zoo
    checkpoint file or URL. ``anchors``: "steps320" (16/32/64/107/160/320, the config since c16e459) or "steps300"
    (16/32/64/100/150/300, before it); default: the weights' (a release file by its name), else "steps320"."""
    checkpoint = fetch_weights(weights, "lufficc_mobilenet_v2_ssd320", pretrained=kwargs.pop("pretrained", None))
    return _build("lufficc_mobilenet_v2_ssd320", lambda _: MobileNetV2LiteBackbone(stride16_map="block"),
                  SeparableLiteHead, _v2_boxes(checkpoint, anchors), checkpoint, num_classes,
                  explicit_boxes=anchors is not None, **kwargs)


@register_model
def lufficc_mobilenet_v3_ssd320(*, weights: Any = None, num_classes: int | None = None,
                                extra_kernel: int | None = None, **kwargs: Any) -> SSD:
    """lufficc/SSD's ``mobilenet_v3_ssd320``: MobileNetV3-Large SSDLite at 320, 3234 default boxes.
    ``weights``: "VOC0712" (= "DEFAULT") or a lufficc/ssd_zoo checkpoint file or URL. ``extra_kernel``: the extra
    blocks' depthwise kernel (1 or 3; default: the weights', else 3)."""
    return _build("lufficc_mobilenet_v3_ssd320", lambda ckpt: _mobilenet_v3(ckpt, extra_kernel), SeparableLiteHead,
                  MOBILE_V3_BOXES, weights, num_classes, **kwargs)


@register_model
def lufficc_efficient_net_b3_ssd300(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """lufficc/SSD's ``efficient_net_b3_ssd300``: EfficientNet-B3 SSD300, 8732 default boxes; needs timm.
    ``weights``: "VOC0712" (= "DEFAULT") or a lufficc/ssd_zoo checkpoint file or URL."""
    return _build("lufficc_efficient_net_b3_ssd300", _efficient_net_b3, SSDHead, EFFICIENT_NET_BOXES, weights,
                  num_classes, **kwargs)


# ---- the published weights (release 1.2, README "MODEL ZOO", PASCAL VOC table) ----------------------------------
class Lufficc_MobileNet_V2_SSD320_Weights(WeightsEnum):
    """lufficc/SSD's ``mobilenet_v2_ssd320_voc0712_v2.pth`` (``{"model": state_dict}``, converted on load)."""

    VOC0712 = release_entry("mobilenet_v2_ssd320_voc0712_v2.pth", "lufficc_mobilenet_v2_ssd320", 320, None, 68.9,
                            config="mobilenet_v2_ssd320_voc0712", anchors="steps320", commit="c16e459")
    # The first file (README until c16e459: 68.8), trained with the config's steps before that commit (as at 09fb318).
    VOC0712_STEPS300 = release_entry("mobilenet_v2_ssd320_voc0712.pth", "lufficc_mobilenet_v2_ssd320", 320, None,
                                     68.8, config="mobilenet_v2_ssd320_voc0712", anchors="steps300",
                                     commit="09fb318c391940e27170b92f7769edfd1bb68ef7")
    DEFAULT = VOC0712


class Lufficc_MobileNet_V3_SSD320_Weights(WeightsEnum):
    """lufficc/SSD's ``mobilenet_v3_ssd320_voc0712.pth`` (``{"model": state_dict}``, converted on load)."""

    VOC0712 = release_entry("mobilenet_v3_ssd320_voc0712.pth", "lufficc_mobilenet_v3_ssd320", 320, None, 69.5)
    DEFAULT = VOC0712


class Lufficc_EfficientNet_B3_SSD300_Weights(WeightsEnum):
    """lufficc/SSD's ``efficient_net_b3_ssd300_voc0712.pth`` (``{"model": state_dict}``, converted on load)."""

    VOC0712 = release_entry("efficient_net_b3_ssd300_voc0712.pth", "lufficc_efficient_net_b3_ssd300", 300, None, 73.9)
    DEFAULT = VOC0712


register_weights("lufficc_mobilenet_v2_ssd320", Lufficc_MobileNet_V2_SSD320_Weights)
register_weights("lufficc_mobilenet_v3_ssd320", Lufficc_MobileNet_V3_SSD320_Weights)
register_weights("lufficc_efficient_net_b3_ssd300", Lufficc_EfficientNet_B3_SSD300_Weights)
