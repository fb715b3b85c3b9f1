"""State-dict converters between ssd_zoo and other SSD projects' layouts: pure functions on key tables.

Each layout is data, described once: a table ``ssd_zoo key -> other project's key`` and the tensor
permutations it needs (conv1_1's input channels for BGR-trained weights). The conversion in either direction
reads that table, and any missing or unexpected key raises an error that lists them all (mis-shaped tensors
are reported when the result is loaded, see :func:`ssd_zoo.weights.load_state_dict`). This module imports
nothing else of ssd_zoo.

Layouts:
- ``"ssd_zoo"``: this project (``backbone.features.conv1_1.weight``, ``head.classification.0.weight``, ...).
- ``"torchvision"``: ``torchvision.models.detection.ssd300_vgg16`` (``backbone.features.0.weight``,
  ``backbone.scale_weight``, ``head.classification_head.module_list.0.weight``, ...).
- ``"ssd.pytorch"``: amdegroot/ssd.pytorch and the simple SSDs derived from it (``vgg.0.weight``,
  ``L2Norm.weight``, ``extras.0.weight``, ``loc.0.weight``, ``conf.0.weight``).

All three order a level's head channels box-major (``channel = box * C + class``), so head tensors are
copied unchanged. Command line: ``ssd-zoo convert --from ssd.pytorch IN.pth OUT.pth`` (:mod:`ssd_zoo.cli`).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor

InputOrder = Literal["rgb", "bgr"]
LAYOUTS = ("ssd_zoo", "torchvision", "ssd.pytorch")

_VGG_CONVS = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "3_3", "4_1", "4_2", "4_3", "5_1", "5_2", "5_3"]
# Where VGG16's convs sit in torchvision's `vgg16().features` and in ssd.pytorch's `vgg` list (conv, ReLU, pool).
_VGG_INDICES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
_FC6_INDEX, _FC7_INDEX = 31, 33  # ssd.pytorch: pool5 at 30, dilated fc6 at 31, ReLU, fc7 at 33
_FIRST_CONV = "backbone.features.conv1_1.weight"


def _conv_keys(table: dict[str, str]) -> dict[str, str]:
    """Conv module names -> their ``.weight`` and ``.bias`` parameter names."""
    return {f"{src}.{p}": f"{dst}.{p}" for src, dst in table.items() for p in ("weight", "bias")}


def _ssd_zoo_vgg_name(conv: str) -> str:
    """``"4_3"`` -> ``"backbone.features.conv4_3"``; conv5_x live after pool4, in ``backbone.fc``."""
    return f"backbone.{'fc' if conv.startswith('5') else 'features'}.conv{conv}"


def _extras_and_head(num_levels: int, extra: Callable[[int, int], str], cls: str, reg: str) -> dict[str, str]:
    """conv8 ... (extra block ``b``, conv ``i`` in 0, 1 named ``extra(b, i)``) and the per-level head convs."""
    table = {}
    for block in range(num_levels - 2):  # levels 0 and 1 are conv4_3 and fc7
        n = block + 8
        table[f"backbone.extras.conv{n}.conv{n}_1"] = extra(block, 0)
        table[f"backbone.extras.conv{n}.conv{n}_2"] = extra(block, 1)
    for level in range(num_levels):
        table[f"head.classification.{level}"] = f"{cls}.{level}"
        table[f"head.regression.{level}"] = f"{reg}.{level}"
    return table


def _torchvision_table(num_levels: int = 6) -> dict[str, str]:
    """ssd_zoo key -> torchvision ``ssd300_vgg16`` key (its VGG layers are indexed, as in torchvision's vgg16)."""
    table = {_ssd_zoo_vgg_name(n): f"backbone.features.{i}" for n, i in zip(_VGG_CONVS[:10], _VGG_INDICES)}
    # extra.0 = pool4, conv5_1..relu5_3 (indices 1, 3, 5), then fc = (pool5, fc6, relu, fc7, relu) at index 7.
    table.update({"backbone.fc.conv5_1": "backbone.extra.0.1", "backbone.fc.conv5_2": "backbone.extra.0.3",
                  "backbone.fc.conv5_3": "backbone.extra.0.5", "backbone.fc.fc6": "backbone.extra.0.7.1",
                  "backbone.fc.fc7": "backbone.extra.0.7.3"})
    # torchvision's extra.k (k >= 1) is (conv, ReLU, conv, ReLU): its convs sit at 0 and 2.
    table.update(_extras_and_head(num_levels, lambda b, i: f"backbone.extra.{b + 1}.{2 * i}",
                                  "head.classification_head.module_list", "head.regression_head.module_list"))
    return {**_conv_keys(table), "backbone.l2norm.weight": "backbone.scale_weight"}


def _ssd_pytorch_table(num_levels: int = 6) -> dict[str, str]:
    """ssd_zoo key -> ssd.pytorch key: ``vgg.N`` (N as in its ``vgg`` list), ``extras.N``, ``loc.N``, ``conf.N``."""
    table = {_ssd_zoo_vgg_name(n): f"vgg.{i}" for n, i in zip(_VGG_CONVS, _VGG_INDICES)}
    table.update({"backbone.fc.fc6": f"vgg.{_FC6_INDEX}", "backbone.fc.fc7": f"vgg.{_FC7_INDEX}"})
    # ssd.pytorch's extras is one flat list of convs (1x1, 3x3, 1x1, 3x3, ...); its forward applies the ReLUs.
    table.update(_extras_and_head(num_levels, lambda b, i: f"extras.{2 * b + i}", "conf", "loc"))
    return {**_conv_keys(table), "backbone.l2norm.weight": "L2Norm.weight"}


def _rename(state_dict: Mapping[str, Tensor], expected: dict[str, str], source: str) -> dict[str, Tensor]:
    """Rename keys (``expected``: source key -> target key); report every key that fits nowhere."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise KeyError(f"{source} state dict does not fit the layout: missing keys {missing}, unexpected keys {unexpected}")
    return {expected[key]: value for key, value in state_dict.items()}


def num_levels(state_dict: Mapping[str, Tensor], pattern: str = "head.regression.{}.weight") -> int:
    """How many head levels a state dict has: the count of keys ``pattern.format(level)`` present."""
    level = 0
    while pattern.format(level) in state_dict:
        level += 1
    return level


def _permute_first_conv(state_dict: dict[str, Tensor], input_order: InputOrder) -> dict[str, Tensor]:
    """For BGR-trained weights, swap conv1_1's input channels (B, G, R) -> (R, G, B), and back."""
    if input_order not in ("rgb", "bgr"):
        raise ValueError(f"input_order: expected 'rgb' or 'bgr', found {input_order!r}")
    if input_order == "bgr":
        state_dict[_FIRST_CONV] = state_dict[_FIRST_CONV].flip(1)  # [64, 3, 3, 3]: dim 1 is the input channel
    return state_dict


def from_torchvision(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ``ssd300_vgg16`` state dict -> ssd_zoo ``ssd300_vgg16`` state dict (same tensors)."""
    inverse = {v: k for k, v in _torchvision_table().items()}
    return _rename(state_dict, inverse, "torchvision")


def to_torchvision(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """ssd_zoo ``ssd300_vgg16`` state dict -> one that torchvision's ``ssd300_vgg16`` loads with ``strict=True``
    (ssd_zoo's model record is left out: torchvision has no place for it)."""
    return _rename(split_record(state_dict)[0], _torchvision_table(), "ssd_zoo")


def from_ssd_pytorch(state_dict: Mapping[str, Tensor], input_order: InputOrder = "rgb") -> dict[str, Tensor]:
    """ssd.pytorch state dict (SSD300: 6 levels, or 7 for an SSD512 built the same way) -> ssd_zoo's.

    Args:
        state_dict: keys ``vgg.N.*``, ``L2Norm.weight``, ``extras.N.*``, ``loc.N.*``, ``conf.N.*``.
        input_order: the channel order the network was trained on. ssd.pytorch's own weights are RGB (it
            flips OpenCV's BGR after mean subtraction); ``"bgr"`` permutes conv1_1's input channels so that
            the converted model takes RGB, like every ssd_zoo model.
    """
    inverse = {v: k for k, v in _ssd_pytorch_table(num_levels(state_dict, "loc.{}.weight")).items()}
    return _permute_first_conv(_rename(state_dict, inverse, "ssd.pytorch"), input_order)


def to_ssd_pytorch(state_dict: Mapping[str, Tensor], input_order: InputOrder = "rgb") -> dict[str, Tensor]:
    """ssd_zoo state dict -> ssd.pytorch's layout; ``input_order="bgr"`` for a network fed BGR images (ssd_zoo's
    model record is left out)."""
    state = _permute_first_conv(split_record(state_dict)[0], input_order)
    return _rename(state, _ssd_pytorch_table(num_levels(state, "head.regression.{}.weight")), "ssd_zoo")


# ssd_zoo's model record in a state dict (see ``SSD.record``: default boxes, input size, normalisation, classes),
# a uint8 tensor of UTF-8 JSON, so that every tool that handles state dicts of tensors handles it; the other
# layouts have none.
RECORD_KEY = "_record"


def encode_record(record: dict[str, object]) -> Tensor:
    """A JSON-able dict -> uint8 ``[N]`` tensor (UTF-8 JSON)."""
    return torch.tensor(list(json.dumps(record, sort_keys=True).encode()), dtype=torch.uint8)


def decode_record(tensor: Tensor) -> dict[str, object]:
    """What :func:`encode_record` wrote."""
    return json.loads(bytes(tensor.cpu().tolist()).decode())


def split_record(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict | None]:
    """``(the other tensors, ssd_zoo's model record decoded, or None)`` of a state dict."""
    tensors = {k: v for k, v in state_dict.items() if k != RECORD_KEY}
    return tensors, decode_record(state_dict[RECORD_KEY]) if RECORD_KEY in state_dict else None


def head_classes(state_dict: Mapping[str, Tensor]) -> int | None:
    """Classes with background of an ssd_zoo-layout state dict, from level 0's head convs ``[k*C, ...]`` and
    ``[k*4, ...]``; None where they are not there."""
    cls, reg = state_dict.get("head.classification.0.weight"), state_dict.get("head.regression.0.weight")
    return None if cls is None or reg is None else cls.shape[0] // (reg.shape[0] // 4)


# What a layout implies about default boxes: torchvision's SSD300 uses its own (= "coco") scales,
# ssd.pytorch the paper's VOC ones; an ssd_zoo file does not say.
LAYOUT_ANCHORS: dict[str, str | None] = {"torchvision": "coco", "ssd.pytorch": "voc", "ssd_zoo": None}

# A key prefix that only one layout has, to recognise it (ssd_zoo's holds for every backbone and head type).
_MARKERS = {"ssd_zoo": "head.classification.", "torchvision": "backbone.scale_weight", "ssd.pytorch": "L2Norm.weight"}


def unwrap(checkpoint: Mapping[str, object]) -> dict[str, Tensor]:
    """The state dict inside a checkpoint: a ``"model"`` or ``"state_dict"`` entry if there is one, with
    DataParallel's ``module.`` prefix removed."""
    for entry in ("model", "state_dict"):
        if isinstance(checkpoint.get(entry), Mapping):
            checkpoint = checkpoint[entry]
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def detect_layout(state_dict: Mapping[str, Tensor], where: str = "state dict") -> str:
    """Which of :data:`LAYOUTS` ``state_dict`` is in, recognised by one key each; ValueError otherwise."""
    found = [layout for layout, prefix in _MARKERS.items() if any(key.startswith(prefix) for key in state_dict)]
    if len(found) != 1:
        sample = sorted(state_dict)[:5]
        raise ValueError(
            f"{where}: expected exactly one of the SSD layouts {_MARKERS} (layout: key prefix), "
            f"found {found or 'none'}; first keys: {sample}"
        )
    return found[0]


def to_ssd_zoo(state_dict: Mapping[str, Tensor], layout: str | None = None, input_order: InputOrder = "rgb",
               where: str = "state dict") -> dict[str, Tensor]:
    """Any supported layout (detected when ``layout`` is None) -> ssd_zoo's layout."""
    layout = layout or detect_layout(state_dict, where)
    if layout == "ssd_zoo":
        return _permute_first_conv(dict(state_dict), input_order)
    if layout == "torchvision":
        return _permute_first_conv(from_torchvision(state_dict), input_order)
    if layout == "ssd.pytorch":
        return from_ssd_pytorch(state_dict, input_order)
    raise ValueError(f"{where}: expected a layout in {LAYOUTS}, found {layout!r}")


def from_ssd_zoo(state_dict: Mapping[str, Tensor], layout: str, input_order: InputOrder = "rgb") -> dict[str, Tensor]:
    """ssd_zoo's layout -> ``layout`` (one of :data:`LAYOUTS`)."""
    if layout == "ssd_zoo":
        return _permute_first_conv(dict(state_dict), input_order)
    if layout == "torchvision":
        return to_torchvision(_permute_first_conv(dict(state_dict), input_order))
    if layout == "ssd.pytorch":
        return to_ssd_pytorch(state_dict, input_order)
    raise ValueError(f"expected a layout in {LAYOUTS}, found {layout!r}")


def vgg16_backbone_from(state_dict: Mapping[str, Tensor], where: str = "state dict",
                        input_order: InputOrder = "rgb") -> dict[str, Tensor]:
    """An ImageNet VGG16 file -> ``VGG16Backbone`` keys (``features.conv1_1.weight``, ``fc.fc6.weight``, ...).

    Layouts: torchvision's ``vgg16()`` (``features.N.*``: conv1_1 ... conv5_3; ``classifier.*`` is dropped,
    the SSD has its own fc6/fc7) or ssd.pytorch's ``vgg16_reducedfc.pth`` (``N.*`` or ``vgg.N.*``: conv1_1 ...
    conv5_3 and the reduced fc6 (31) and fc7 (33)).
    """
    if any(key.startswith("features.") for key in state_dict):
        table = {_ssd_zoo_vgg_name(n): f"features.{i}" for n, i in zip(_VGG_CONVS, _VGG_INDICES)}
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
        source = f"{where} (torchvision vgg16 layout)"
    else:
        table = {_ssd_zoo_vgg_name(n): str(i) for n, i in zip(_VGG_CONVS, _VGG_INDICES)}
        table.update({"backbone.fc.fc6": str(_FC6_INDEX), "backbone.fc.fc7": str(_FC7_INDEX)})
        state_dict = {k.removeprefix("vgg."): v for k, v in state_dict.items()}
        source = f"{where} (ssd.pytorch vgg16_reducedfc layout)"
    inverse = {v: k for k, v in _conv_keys(table).items()}
    state = _permute_first_conv(_rename(state_dict, inverse, source), input_order)
    return {k.removeprefix("backbone."): v for k, v in state.items()}

