"""What the subcommands share: the model named by ``--model`` / ``--weights``, and range checks on options."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ssd_zoo.registry import build, get_builder, load
from ssd_zoo.weights.resolve import Checkpoint, read_weights, resolve_weights

Subparsers = Any  # argparse's _SubParsersAction, private in the standard library
DEFAULT_MODEL = "ssd300_vgg16"


def build_from_args(args: argparse.Namespace, **kwargs: Any) -> tuple[Any, str, str]:
    """``(model, model name, weights as text)`` for ``--model`` and ``--weights``. Without ``--model``, a checkpoint
    file or URL becomes the model it fits (:func:`ssd_zoo.registry.load`: the builder an ssd_zoo file records, the
    recipes' too, or the model its layout names); otherwise the model is ``ssd300_vgg16``. The file is read once."""
    if args.model is not None:
        get_builder(args.model)  # a misspelt --model: "unknown model ..., did you mean ...", before any weights
    given = None if args.weights.lower() == "none" else args.weights
    weights = resolve_weights(given, args.model or DEFAULT_MODEL)
    if args.model is None and isinstance(weights, (str, Path)):  # a file or a URL: it says what it is
        model = load(weights, **kwargs)
        return model, (model.builder or {}).get("name", type(model).__name__), str(weights)
    name, builder_kwargs = args.model or DEFAULT_MODEL, {}
    if isinstance(weights, (str, Path)):  # --model and a file: the file must hold that model (or not say)
        weights = read_weights(weights)
        saved = (weights.record or {}).get("builder")
        if saved is not None and saved["name"] != name:
            raise SystemExit(f"ssd-zoo {args.command}: {weights.source} holds model {saved['name']!r}, not "
                             f"{name!r}; pass --model {saved['name']} (or leave it out)")
        if saved is not None:
            builder_kwargs = saved["kwargs"]
    try:
        model = build(name, weights=weights, **{**builder_kwargs, **kwargs})
    except TypeError as error:  # a builder that needs keywords the command line does not have (backbone=...)
        raise SystemExit(f"ssd-zoo {args.command}: model {name!r} cannot be built from the command line ({error}); "
                         "pass a checkpoint saved by ssd_zoo.build (it records its builder) without --model, or "
                         "build it in Python") from None
    return model, name, weights.name if isinstance(weights, Checkpoint) else str(weights)


def check_arguments(args: argparse.Namespace) -> None:
    """Raise ValueError naming the option for a number out of range or a device that is not there (whichever
    of ``--score``, ``--batch-size``, ``--opset``, ``--tile``, ``--overlap``, ``--every``, ``--device`` the
    subcommand has)."""
    score, batch_size, opset = (getattr(args, key, None) for key in ("score", "batch_size", "opset"))
    if score is not None and not 0.0 <= score <= 1.0:
        raise ValueError(f"--score: expected a score threshold in [0, 1], found {score}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size: expected at least 1 image, found {batch_size}")
    if opset is not None and not 11 <= opset <= 25:
        raise ValueError(f"--opset: expected an ONNX opset in 11..25, found {opset}")
    tile, overlap, every = (getattr(args, key, None) for key in ("tile", "overlap", "every"))
    if tile is not None and tile < 32:
        raise ValueError(f"--tile: expected a tile side of at least 32 pixels, found {tile}")
    if overlap is not None and not 0.0 <= overlap < 1.0:
        raise ValueError(f"--overlap: expected a fraction of a tile in [0, 1), found {overlap}")
    if every is not None and every < 1:
        raise ValueError(f"--every: expected to detect every N-th frame with N >= 1, found {every}")
    device = getattr(args, "device", None)
    if device is not None:
        try:
            kind = torch.device(device).type
        except RuntimeError:
            raise ValueError(f"--device: expected a torch device such as cpu, cuda or cuda:1, found {device!r}") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: torch.cuda.is_available() is False here; pass --device cpu")
