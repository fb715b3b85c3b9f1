"""State-dict converters between ssd_zoo and other SSD projects' layouts.

Each layout is described once, as a table ``ssd_zoo key prefix -> other project's key prefix``; the
conversion in either direction reads that table, and any missing, unexpected or mis-shaped key raises an
error that lists them all.
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

_VGG_CONVS = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "3_3", "4_1", "4_2", "4_3"]


def _conv_keys(table: dict[str, str]) -> dict[str, str]:
    """Conv module names -> their ``.weight`` and ``.bias`` parameter names."""
    return {f"{src}.{p}": f"{dst}.{p}" for src, dst in table.items() for p in ("weight", "bias")}


def _torchvision_table(num_levels: int = 6) -> dict[str, str]:
    """ssd_zoo key -> torchvision ``ssd300_vgg16`` key (its VGG layers are indexed, as in torchvision's vgg16)."""
    # torchvision keeps VGG16's `features` indices: convs at 0, 2, 5, 7, 10, 12, 14, 17, 19, 21.
    vgg_indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21]
    table = {f"backbone.features.conv{n}": f"backbone.features.{i}" for n, i in zip(_VGG_CONVS, vgg_indices)}
    # extra.0 = pool4, conv5_1..relu5_3 (indices 1, 3, 5), then fc = (pool5, fc6, relu, fc7, relu) at index 7.
    table.update({"backbone.fc.conv5_1": "backbone.extra.0.1", "backbone.fc.conv5_2": "backbone.extra.0.3",
                  "backbone.fc.conv5_3": "backbone.extra.0.5", "backbone.fc.fc6": "backbone.extra.0.7.1",
                  "backbone.fc.fc7": "backbone.extra.0.7.3"})
    for block in range(1, num_levels - 1):
        n = block + 7  # conv8 ... conv11
        table[f"backbone.extras.conv{n}.conv{n}_1"] = f"backbone.extra.{block}.0"
        table[f"backbone.extras.conv{n}.conv{n}_2"] = f"backbone.extra.{block}.2"
    for level in range(num_levels):
        table[f"head.classification.{level}"] = f"head.classification_head.module_list.{level}"
        table[f"head.regression.{level}"] = f"head.regression_head.module_list.{level}"
    return {**_conv_keys(table), "backbone.l2norm.weight": "backbone.scale_weight"}


def _rename(state_dict: Mapping[str, Tensor], expected: dict[str, str], source: str) -> dict[str, Tensor]:
    """Rename keys (``expected``: source key -> target key); report every key that fits nowhere."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise KeyError(f"{source} state dict does not fit the layout: missing keys {missing}, unexpected keys {unexpected}")
    return {expected[key]: value for key, value in state_dict.items()}


def from_torchvision(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ``ssd300_vgg16`` state dict -> ssd_zoo ``ssd300_vgg16`` state dict (same tensors)."""
    inverse = {v: k for k, v in _torchvision_table().items()}
    return _rename(state_dict, inverse, "torchvision")


def to_torchvision(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """ssd_zoo ``ssd300_vgg16`` state dict -> one that torchvision's ``ssd300_vgg16`` loads with ``strict=True``."""
    return _rename(state_dict, _torchvision_table(), "ssd_zoo")
