"""The model record: what a saved SSD says about itself, where it is stored, and its one codec.

:meth:`ssd_zoo.SSD.record` writes it (``format``, ``input_size``, ``default_boxes``, ``mean``/``std``,
``num_classes``, ``categories``, ``builder``, ``resize``, ``pad_fill``), so that a saved model comes back as it
was trained, or not at all. It travels as UTF-8 JSON with sorted keys (:func:`record_to_json`):

- in a state dict, under :data:`RECORD_STATE_KEY`, as a uint8 ``[N]`` tensor of that JSON
  (:func:`encode_record`), so that every tool that handles state dicts of tensors handles it; other projects'
  layouts have none;
- in an exported ONNX / OpenVINO file's metadata, under :data:`RECORD_METADATA_KEY`, as the JSON text.

This module imports nothing else of ssd_zoo: the state-dict converters (:mod:`ssd_zoo.weights.convert`) read it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

RECORD_FORMAT = "ssd_zoo.SSD/1"  # the version of the record's contents
RECORD_STATE_KEY = "_record"  # its key in a state dict (SSD's buffer of that name)
RECORD_METADATA_KEY = "ssd_zoo.record"  # its key in an exported file's metadata


def record_to_json(record: Mapping[str, Any]) -> str:
    """The record as JSON text (keys sorted)."""
    return json.dumps(record, sort_keys=True)


def record_from_json(text: str) -> dict[str, Any]:
    """What :func:`record_to_json` wrote."""
    return json.loads(text)


def encode_record(record: Mapping[str, Any]) -> Tensor:
    """The record -> uint8 ``[N]`` tensor of its UTF-8 JSON (what a state dict holds)."""
    return torch.tensor(list(record_to_json(record).encode()), dtype=torch.uint8)


def decode_record(tensor: Tensor) -> dict[str, Any]:
    """What :func:`encode_record` wrote."""
    return record_from_json(bytes(tensor.cpu().tolist()).decode())


def split_record(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """``(the other tensors, the model record decoded, or None)`` of a state dict."""
    tensors = {k: v for k, v in state_dict.items() if k != RECORD_STATE_KEY}
    return tensors, decode_record(state_dict[RECORD_STATE_KEY]) if RECORD_STATE_KEY in state_dict else None
