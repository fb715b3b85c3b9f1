"""NVIDIA DeepLearningExamples' SSD300 v1.1 (ResNet-50, COCO): its architecture, layout, default boxes, weights.

Their ``ssd/model.py``: torchvision's ``resnet50`` up to ``layer3`` (children 0..6) with layer3's first block at
stride 1 (conv1, conv2 and the downsample), so the first map is 1024@38x38; five extra blocks (1x1 conv, BN,
ReLU, 3x3 conv (stride 2, padding 1 for the first three; no padding for the last two), BN, ReLU; convs without
bias; channels 512/512/256/256/256 through 256/256/128/128/128); 3x3 ``loc``/``conf`` convs with bias;
81 classes (COCO's 80 and background), softmax. Their ``utils.py`` ``dboxes300_coco``: maps 38/19/10/5/3/1,
steps 8/16/32/64/100/300, scales 21..315, ratios 2 / 2,3 and every ``(cx, cy, w, h)`` clamped to [0, 1]
(``clip="all"``), coded with scale_xy 0.1 / scale_wh 0.2 (ssd_zoo's variances); input 300x300 RGB normalised
with ImageNet's mean/std (their validation transform).

The layout is a key table plus one permutation per head conv: their ``bbox_view`` reads a conv's channels
as ``[4 or C, boxes]`` (coordinate-major) and its default boxes box by box over the whole map; ssd_zoo's head
reads ``[boxes, 4 or C]`` per location. Permuting the output channels maps one onto the other: the same
predictions for the same default boxes, listed per location instead of per box shape.
Licence: Apache-2.0 (code); the checkpoint is distributed on NGC under NVIDIA's terms.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchvision.models import WeightsEnum
from torchvision.models.resnet import resnet50

from ssd_zoo.weights import convert
from ssd_zoo.models.record import split_record
from ssd_zoo.models.builder import assemble_ssd
from ssd_zoo.models.head import SSDHead
from ssd_zoo.models.ssd import SSD
from ssd_zoo.ops.default_boxes import DefaultBoxSpec
from ssd_zoo.weights.published import COCO80_CATEGORIES, register_weights, ssd_weights
from ssd_zoo.registry import register_model
from ssd_zoo.transform import IMAGENET_MEAN, IMAGENET_STD
from ssd_zoo.weights.resolve import fetch_weights

MODEL = "nvidia_ssd300_resnet50"
LAYOUT = "nvidia"
NUM_CLASSES = 81
# dboxes300_coco: the "coco" sizes with every coordinate clamped, as their DefaultBoxes does.
DEFAULT_BOXES = DefaultBoxSpec(300, (21, 45, 99, 153, 207, 261, 315), ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
                               (8, 16, 32, 64, 100, 300), clip="all")
# Their evaluate.py: encoder.decode_batch(..., criteria=0.50, max_output=200); utils.py decode_single: score > 0.05,
# the best 200 per class (max_num) enter NMS, 200 per image; scale_back_batch clips no box before NMS.
POSTPROCESS = {"score_thresh": 0.05, "nms_thresh": 0.5, "topk_candidates": 200, "detections_per_img": 200,
               "clip_before_nms": False}
_EXTRA_CHANNELS = [(1024, 256, 512), (512, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)]


def _extra_block(in_ch: int, mid: int, out_ch: int, strided: bool) -> nn.Sequential:
    """Their additional block: 1x1 conv, BN, ReLU, 3x3 conv (stride 2, padding 1; or neither), BN, ReLU."""
    conv = nn.Conv2d(mid, out_ch, 3, padding=1, stride=2, bias=False) if strided else nn.Conv2d(mid, out_ch, 3, bias=False)
    return nn.Sequential(nn.Conv2d(in_ch, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         conv, nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class NvidiaResNet50Backbone(nn.Module):
    """``[B, 3, 300, 300]`` -> maps ``1024@38, 512@19, 512@10, 256@5, 256@3, 256@1``; keys as theirs
    (``feature_extractor.N`` = torchvision resnet50's children, ``additional_blocks.N``).

    Attributes:
        out_channels: channels of each map, read by the head.
    """

    def __init__(self) -> None:
        super().__init__()
        self.feature_extractor = nn.Sequential(*list(resnet50(weights=None).children())[:7])
        block = self.feature_extractor[-1][0]  # layer3's first block: stride 1, so 38x38 stays 38x38
        block.conv1.stride, block.conv2.stride, block.downsample[0].stride = (1, 1), (1, 1), (1, 1)
        self.additional_blocks = nn.ModuleList(_extra_block(*c, strided=i < 3) for i, c in enumerate(_EXTRA_CHANNELS))
        for module in self.additional_blocks.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
        self.out_channels = [1024] + [out for _, _, out in _EXTRA_CHANNELS]

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [self.feature_extractor(x)]
        for block in self.additional_blocks:
            features.append(block(features[-1]))
        return features


@register_model
def nvidia_ssd300_resnet50(*, weights: Any = None, num_classes: int | None = None, **kwargs: Any) -> SSD:
    """NVIDIA's SSD300 v1.1 on ResNet-50: 8732 default boxes on maps 38/19/10/5/3/1, 81 classes (COCO).

    ``weights``: None, "DEFAULT" (= "COCO_AMP_200703"), a :class:`NVIDIA_SSD300_ResNet50_Weights` member, or a
    checkpoint path/URL (their ``{"model": state_dict}``, with or without DDP's ``module.``, or ssd_zoo's layout).
    """
    checkpoint = fetch_weights(weights, MODEL, pretrained=kwargs.pop("pretrained", None))
    num_classes = checkpoint.config(num_classes, None)[0] if checkpoint is not None else num_classes or NUM_CLASSES
    return assemble_ssd(lambda _: NvidiaResNet50Backbone(), SSDHead, DEFAULT_BOXES, num_classes, checkpoint,
                        mean=IMAGENET_MEAN, std=IMAGENET_STD, thresholds=POSTPROCESS, **kwargs)


# --- the layout ---
def _boxes_per_level(state_dict: dict[str, Tensor], loc: str) -> list[int]:
    """Default boxes per location of each level, from the regression convs ``[boxes * 4, ...]``."""
    return [state_dict[loc.format(level)].shape[0] // 4 for level in range(convert.num_levels(state_dict, loc))]


def _permute(tensor: Tensor, boxes: int, to_ssd_zoo: bool) -> Tensor:
    """Output channels ``value * boxes + box`` (theirs) <-> ``box * values + value`` (ssd_zoo's)."""
    values = tensor.shape[0] // boxes
    shape = (values, boxes) if to_ssd_zoo else (boxes, values)
    return tensor.reshape(*shape, *tensor.shape[1:]).transpose(0, 1).reshape(tensor.shape).contiguous()


# ssd_zoo key prefix -> theirs (their SSD300 nests its ResNet wrapper: feature_extractor.feature_extractor.N).
_PREFIXES = {"backbone.feature_extractor.": "feature_extractor.feature_extractor.",
             "backbone.additional_blocks.": "additional_blocks.", "head.regression.": "loc.", "head.classification.": "conf."}


def _renamed(state_dict: dict[str, Tensor], prefixes: dict[str, str], source: str) -> dict[str, Tensor]:
    """Keys renamed by prefix (``prefixes``: source prefix -> target prefix); a key under none raises."""
    table = {key: target + key.removeprefix(prefix) for key in state_dict
             for prefix, target in prefixes.items() if key.startswith(prefix)}
    return convert.rename(state_dict, table, source)


def from_nvidia(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Their SSD300 state dict -> ssd_zoo's ``nvidia_ssd300_resnet50`` (head channels permuted)."""
    boxes = _boxes_per_level(state_dict, "loc.{}.weight")
    state = _renamed(state_dict, {theirs: ours for ours, theirs in _PREFIXES.items()}, "nvidia")
    for level, k in enumerate(boxes):
        for key in (f"head.{head}.{level}.{part}" for head in ("classification", "regression") for part in ("weight", "bias")):
            state[key] = _permute(state[key], k, to_ssd_zoo=True)
    return state


def to_nvidia(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """ssd_zoo's ``nvidia_ssd300_resnet50`` state dict -> one their ``SSD300`` loads (ssd_zoo's record left out)."""
    tensors = split_record(state_dict)[0]
    boxes = _boxes_per_level(tensors, "head.regression.{}.weight")
    state = _renamed(tensors, _PREFIXES, "ssd_zoo")
    for level, k in enumerate(boxes):
        for key in (f"{head}.{level}.{part}" for head in ("conf", "loc") for part in ("weight", "bias")):
            state[key] = _permute(state[key], k, to_ssd_zoo=False)
    return state


def _model(state_dict: dict[str, Tensor]) -> tuple[str, dict]:
    """Their ResNet-50 SSD300 (6 levels); ResNet-18/34/101/152 variants have other backbone shapes."""
    levels = convert.num_levels(state_dict, "loc.{}.weight")
    first = state_dict.get("loc.0.weight")
    if levels != 6 or first is None or first.shape[1] != 1024:
        found = None if first is None else tuple(first.shape)
        raise ValueError(f"nvidia checkpoint: expected the ResNet-50 SSD300 (6 levels, loc.0 reading 1024 channels), "
                         f"found {levels} levels, loc.0.weight {found}")
    return MODEL, {}


convert.register_layout(convert.Layout(
    LAYOUT, lambda sd: any(k.startswith("feature_extractor.feature_extractor.") for k in sd), from_nvidia, to_nvidia,
    None, _model, "NVIDIA DeepLearningExamples SSD300: feature_extractor.feature_extractor.N, additional_blocks.N",
    label_spaces={81: convert.COCO_80}))


class NVIDIA_SSD300_ResNet50_Weights(WeightsEnum):
    """NVIDIA's published SSD300 v1.1 (``ssd_zoo.build("nvidia_ssd300_resnet50", weights="COCO_AMP_200703")``)."""

    COCO_AMP_200703 = ssd_weights(
        "https://api.ngc.nvidia.com/v2/models/nvidia/ssd_pyt_ckpt_amp/versions/20.06.0/files/nvidia_ssdpyt_amp_200703.pt",
        model=MODEL, input_size=300, layout=LAYOUT, num_classes=NUM_CLASSES, anchors=None,
        categories=COCO80_CATEGORIES, dataset="COCO train2017", mean=IMAGENET_MEAN, std=IMAGENET_STD,
        metrics={"COCO-val2017": {"box_map": 26.5}},
        metrics_source="https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Detection/SSD#training-stability-test"
                       " (median AMP mAP 0.26529 over 15 seeds)",
        recipe="https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Detection/SSD#quick-start-guide",
        postprocess=POSTPROCESS, torch_hub="torch.hub.load('NVIDIA/DeepLearningExamples:torchhub', 'nvidia_ssd')",
        licence="Apache-2.0 code; checkpoint on NGC under NVIDIA's terms",
        source_commit="NVIDIA/DeepLearningExamples@0b3f770b0a87a5bfc549c2ecaaf140f749f24ce0 (PyTorch/Detection/SSD/ssd/"
                      "model.py; ssd/utils.py dboxes300_coco and evaluate.py as at 04099020)",
    )
    DEFAULT = COCO_AMP_200703


register_weights(MODEL, NVIDIA_SSD300_ResNet50_Weights)
