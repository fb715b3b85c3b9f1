"""torchvision's SSDLite320-MobileNetV3-Large: its exact architecture, its layout, its COCO weights; and the checks
that refuse writing a model for torchvision's SSD300 or SSDLite320 layout that torchvision would decode against other
default boxes (registered on both layouts: :func:`ssd_zoo.weights.convert.from_ssd_zoo` and ``to_torchvision`` run them).

torchvision (BSD-3-Clause) publishes ``ssdlite320_mobilenet_v3_large`` COCO_V1 (21.3 box AP on COCO val2017).
Those weights were trained without an ImageNet backbone, so the backbone is MobileNetV3-Large with the
"reduced tail" (MobileNetV3 paper, table 6: the last stage at half width, 480 channels), every BatchNorm with
``eps=0.001, momentum=0.03``. The model here is built from torchvision's own modules: its ``mobilenet_v3_large``
cut as its ``SSDLiteFeatureExtractorMobileNet`` (C4's expansion at stride 16, 672 channels; the last conv at
stride 32, 480), its four depthwise extra blocks (512/256/256/128 channels), so the backbone's keys are
torchvision's own; the head is ssd_zoo's :class:`~ssd_zoo.models.ssdlite.SSDLiteHead` with torchvision's
BatchNorm (key table below). Default boxes: :func:`~ssd_zoo.models.ssdlite.ssdlite_spec` (torchvision's
``DefaultBoxGenerator([[2, 3]] * 6, 0.2, 0.95)``), input 320x320, normalisation ``(x - 0.5) / 0.5``,
post-processing as torchvision's defaults (score 0.001, NMS IoU 0.55, top-300 candidates, 300 detections).
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from torch import Tensor, nn
from torchvision.models import WeightsEnum
from torchvision.models.detection.ssdlite import SSDLiteFeatureExtractorMobileNet
from torchvision.models.mobilenetv3 import mobilenet_v3_large

from ssd_zoo.weights import convert
from ssd_zoo.models.record import split_record
from ssd_zoo.models.builder import assemble_ssd
from ssd_zoo.models.ssd import SSD
from ssd_zoo.models.ssdlite import SSDLiteHead, ssdlite_spec
from ssd_zoo.ops.default_boxes import DefaultBoxSpec, preset
from ssd_zoo.weights.published import COCO_CATEGORIES, register_weights, ssd_weights
from ssd_zoo.registry import register_model
from ssd_zoo.weights.resolve import fetch_weights

MODEL = "ssdlite320_mobilenet_v3_large"
LAYOUT = "torchvision-ssdlite"
INPUT_SIZE = 320
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
# torchvision's ssdlite320_mobilenet_v3_large defaults, with which COCO_V1's 21.3 AP was measured.
POSTPROCESS = {"score_thresh": 0.001, "nms_thresh": 0.55, "topk_candidates": 300, "detections_per_img": 300}
NUM_LEVELS = 6


def torchvision_norm(channels: int) -> nn.BatchNorm2d:
    """torchvision's SSDLite BatchNorm: ``eps=0.001, momentum=0.03``."""
    return nn.BatchNorm2d(channels, eps=0.001, momentum=0.03)


class MobileNetV3SSDLiteBackbone(SSDLiteFeatureExtractorMobileNet):
    """torchvision's SSDLite feature extractor, returning a list of maps as ssd_zoo's backbones do.

    ``[B, 3, 320, 320]`` -> 6 maps ``672@20, 480@10, 512@5, 256@3, 256@2, 128@1`` (reduced tail).

    Attributes:
        out_channels: channels of each map, read by the head.
    """

    def __init__(self, reduced_tail: bool = True) -> None:
        mobilenet = mobilenet_v3_large(weights=None, norm_layer=torchvision_norm, reduced_tail=reduced_tail).features
        # C4: the last strided block before the end (torchvision's stage_indices[-2], the blocks marked _is_cn).
        c4 = [i for i, block in enumerate(mobilenet) if getattr(block, "_is_cn", False)][-1]
        super().__init__(mobilenet, c4, torchvision_norm)
        for module in self.modules():  # torchvision's init without an ImageNet backbone (_normal_init)
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.03)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.out_channels = [block[-1].out_channels for block in [*self.features, *self.extra]]

    def forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        return list(super().forward(x).values())


@register_model
def ssdlite320_mobilenet_v3_large(*, weights: Any = None, num_classes: int | None = None,
                                  reduced_tail: bool = True, **kwargs: Any) -> SSD:
    """torchvision's SSDLite320 on MobileNetV3-Large: 3234 default boxes on maps 20/10/5/3/2/1.

    ``weights``: None, "DEFAULT" (= "COCO_V1", torchvision's 91-class COCO detector), a
    :class:`SSDLite320_MobileNet_V3_Large_Weights` member, or a checkpoint path/URL (torchvision's or ssd_zoo's
    layout). Without weights: 91 classes, as torchvision. ``reduced_tail``: the architecture of COCO_V1 (True).
    """
    checkpoint = fetch_weights(weights, MODEL, pretrained=kwargs.pop("pretrained", None))
    if checkpoint is not None:
        num_classes = checkpoint.config(num_classes, None)[0]  # the weights' classes; a conflict raises
    num_classes = num_classes or 91
    return assemble_ssd(lambda _: MobileNetV3SSDLiteBackbone(reduced_tail),
                        partial(SSDLiteHead, norm_layer=torchvision_norm), ssdlite_spec(INPUT_SIZE), num_classes,
                        checkpoint, mean=MEAN, std=STD, thresholds=POSTPROCESS, **kwargs)


# --- the layout: torchvision's head keys <-> ssd_zoo's (the backbone's keys are the same on both sides) ---
_HEAD = {"classification": "head.classification_head.module_list", "regression": "head.regression_head.module_list"}
# ssd_zoo predictor part -> torchvision's _prediction_block part (Conv2dNormActivation(conv, bn, act), conv).
_PREDICTOR = {"depthwise.weight": "0.0.weight", "bn.weight": "0.1.weight", "bn.bias": "0.1.bias",
              "bn.running_mean": "0.1.running_mean", "bn.running_var": "0.1.running_var",
              "bn.num_batches_tracked": "0.1.num_batches_tracked", "pointwise.weight": "1.weight", "pointwise.bias": "1.bias"}


def _key_table(state_dict: dict[str, Tensor]) -> dict[str, str]:
    """ssd_zoo key -> torchvision key: the head's from the tables above, the backbone's (``backbone.*`` in
    ``state_dict``, either side) unchanged."""
    table = {f"head.{ours}.{level}.{part}": f"{theirs}.{level}.{their_part}"
             for ours, theirs in _HEAD.items() for level in range(NUM_LEVELS) for part, their_part in _PREDICTOR.items()}
    table.update({key: key for key in state_dict if key.startswith("backbone.")})
    return table


def from_torchvision_ssdlite(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ``ssdlite320_mobilenet_v3_large`` state dict -> ssd_zoo's (same tensors)."""
    inverse = {theirs: ours for ours, theirs in _key_table(state_dict).items()}
    return convert.rename(state_dict, inverse, "torchvision ssdlite")


def to_torchvision_ssdlite(state_dict: dict[str, Tensor], where: str = "state dict") -> dict[str, Tensor]:
    """ssd_zoo ``ssdlite320_mobilenet_v3_large`` state dict -> one torchvision's loads with ``strict=True``; a
    model recording other default boxes than torchvision's raises ValueError (:func:`check_torchvision_ssdlite_boxes`)."""
    check_torchvision_ssdlite_boxes(state_dict, None, where)
    tensors = split_record(state_dict)[0]
    return convert.rename(tensors, _key_table(tensors), "ssd_zoo")


def check_torchvision_boxes(state_dict: Mapping[str, Tensor], anchors: str | None = None,
                            where: str = "state dict") -> None:
    """Refuse a conversion to torchvision's layout that torchvision would decode against other default boxes.

    The model's boxes: its ssd_zoo record, else ``anchors`` (what the caller knows it was trained with: "voc" or
    "coco"; e.g. the layout it came from). ValueError where they are not torchvision's (or not known), or where
    the model has other than 6 head levels (torchvision's ssd300_vgg16 is an SSD300).
    """
    levels = convert.num_levels(state_dict)
    if levels != 6:
        raise ValueError(f"{where} has {levels} head levels; torchvision's ssd300_vgg16 has 6 (SSD300)")
    theirs = preset(300, convert.TORCHVISION_ANCHORS)
    record = split_record(state_dict)[1]
    if record is not None:
        ours = DefaultBoxSpec.from_dict(record["default_boxes"])
    elif anchors is not None:
        ours = preset(300, anchors)
    else:
        raise ValueError(f"{where} does not say which default boxes it was trained with; torchvision's ssd300_vgg16 "
                         f"uses anchors='coco' ({theirs.describe()}). Pass anchors='coco' (command line: --anchors coco) "
                         "if that is the model's, else keep it in ssd_zoo's layout")
    if ours != theirs:
        raise ValueError(
            f"{where} was trained with default boxes {ours.describe()}, but torchvision's ssd300_vgg16 decodes with its "
            f"own anchors='coco' ({theirs.describe()}): every detection would be decoded against the wrong boxes. Use "
            "the model with ssd_zoo (ssd_zoo.build('ssd300_vgg16', weights=FILE)) instead")


def check_torchvision_ssdlite_boxes(state_dict: dict[str, Tensor], anchors: str | None = None,
                                    where: str = "state dict") -> None:
    """Refuse a model whose recorded default boxes are not torchvision's SSDLite320's (:func:`ssdlite_spec`):
    torchvision's ``ssdlite320_mobilenet_v3_large`` lays out its own. ``anchors``: unused (no preset applies)."""
    record = split_record(state_dict)[1]
    theirs = ssdlite_spec(INPUT_SIZE)
    if record is not None and DefaultBoxSpec.from_dict(record["default_boxes"]) != theirs:
        ours = DefaultBoxSpec.from_dict(record["default_boxes"])
        raise ValueError(f"{where} was trained with default boxes {ours.describe()}, but torchvision's "
                         f"ssdlite320_mobilenet_v3_large decodes with its own ({theirs.describe()}): every detection "
                         f"would be decoded against the wrong boxes. Use the model with ssd_zoo (ssd_zoo.build("
                         f"'{MODEL}', weights=FILE)) instead")


def _model(state_dict: dict[str, Tensor]) -> tuple[str, dict]:
    """The torchvision SSDLite this layout describes (its head's classes are read by the loader)."""
    return MODEL, {}


convert.register_layout(convert.Layout(
    LAYOUT, lambda sd: any(k.startswith("head.classification_head.module_list.0.0.0.") for k in sd),
    from_torchvision_ssdlite, to_torchvision_ssdlite, None, _model,
    "torchvision ssdlite320_mobilenet_v3_large: head.classification_head.module_list.N.0.0.weight",
    label_spaces={91: convert.COCO_91}, check=check_torchvision_ssdlite_boxes))
convert.set_check("torchvision", check_torchvision_boxes)  # the SSD300 layout convert.py registers


class SSDLite320_MobileNet_V3_Large_Weights(WeightsEnum):
    """torchvision's published SSDLite320-MobileNetV3-Large (``ssd_zoo.build(MODEL, weights="COCO_V1")``)."""

    COCO_V1 = ssd_weights(
        "https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth", sha256="a79551df",
        model=MODEL, input_size=INPUT_SIZE, layout=LAYOUT, num_classes=91, anchors=None, categories=COCO_CATEGORIES,
        dataset="COCO train2017", metrics={"COCO-val2017": {"box_map": 21.3}}, mean=MEAN, std=STD,
        metrics_source="https://pytorch.org/vision/stable/models/generated/"
                       "torchvision.models.detection.ssdlite320_mobilenet_v3_large.html",
        recipe="https://github.com/pytorch/vision/tree/main/references/detection#ssdlite320-mobilenetv3-large",
        postprocess=POSTPROCESS, num_params=3440060, licence="BSD-3-Clause (torchvision)",
        source_commit="pytorch/vision@caf45fd0600d1c2cf1d349ab731a9c28d1707b14 (torchvision/models/detection/ssdlite.py)",
    )
    DEFAULT = COCO_V1


register_weights(MODEL, SSDLite320_MobileNet_V3_Large_Weights)
