"""The training config that ``ssd-zoo train DATA`` makes: the data's splits, the model of the weights it starts
from (or, without weights, the demo's small model from scratch), and a schedule that fits the data's size.

    >>> cfg = config_for_data("my_yolo/data.yaml", weights="runs/demo/best.pth", out="runs/mine")
    >>> ssd_zoo.train.train(cfg)                      # what `ssd-zoo train my_yolo/data.yaml --from ...` runs

The data is any dataset :func:`ssd_zoo.data.open_dataset` opens (VOC folder, COCO .json or a folder of them, YOLO
``data.yaml``): its ``train`` split trains, its ``val`` split (else ``test``) evaluates. The model is built with
the data's classes by :func:`ssd_zoo.train.model.build_model` (head surgery by name keeps the rows of the classes
the weights know). Everything else is a :class:`~ssd_zoo.train.config.TrainConfig` key that ``extra`` may set.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from ssd_zoo.data import list_splits, open_dataset
from ssd_zoo.files import is_url
from ssd_zoo.train.config import TrainConfig
from ssd_zoo.weights.published import lookup_weights
from ssd_zoo.weights.resolve import read_weights

# The demo's model (recipes/configs/shapes_quick.yaml, whose comments say why each choice; a test keeps the two
# equal): an SSD at 128 px on a ResNet-18 of about 1/4 width, images padded to squares, default boxes sized for
# objects of 13-64 px at the input. At another --input-size its sizes do not apply: COCO's preset scales instead.
SMALL_MODEL: dict[str, Any] = {
    "model": "ssd", "backbone": "resnet18", "input_size": 128, "pad_to_square": True,
    "model_kwargs": {"anchors": "coco", "box_sizes": [14, 34, 52, 84.2, 109.3, 134.4],
                     "aspect_ratios": [[2, 3], [2, 3], [2, 3], [2, 3], [2]], "iou_thresh": 0.4,
                     "extra_channels": [128, 128, 128], "timm_kwargs": {"channels": [16, 48, 64, 128], "stem_width": 16}},
}
SIZED_FOR = ("box_sizes", "aspect_ratios")  # SMALL_MODEL's keywords that hold only at its own input size
# The optimisation (the demo's, fine-tuning's): AdamW, warm-up then cosine to 0, no decay on biases and norms.
OPTIMISATION: dict[str, Any] = {"optimizer": "adamw", "lr": 0.003, "weight_decay": 5e-4, "schedule": "cosine",
                                "warmup_factor": 0.01}
# Flips only (no zoom-out canvas, no IoU crops, no colour jitter): the demo's. At fine-tuning's few hundred steps the
# paper's full augmentation cost more than it gave on the shapes fine-tuning data (from a 200-step demo model, VOC07
# 0.10 against 0.23 after 60 steps, 0.31 against 0.45 after 480; seeds moved it by up to 0.04); `--set augment={}`
# for the paper's, on long runs over photos.
AUGMENT: dict[str, Any] = {"zoom_out": 1.0, "iou_crop": False, "photometric_p": 0.0}
BATCH_SIZE = 16
STEPS = {"scratch": 5000, "finetune": 600}  # default steps (whole epochs, at least one): the demo's; fine-tuning's
WARMUP = {"scratch": 200, "finetune": 50}  # warm-up steps, at most a tenth of the run


def data_splits(data: str | os.PathLike) -> tuple[str, str]:
    """``(training split, evaluation split)`` of the dataset at ``data``: ``train``, and ``val`` else ``test``."""
    splits = list_splits(data)
    if "train" not in splits:
        raise ValueError(f"{data}: expected a 'train' split to train on, found the splits {list(splits)}")
    held_out = next((s for s in ("val", "test") if s in splits), None)
    if held_out is None:
        raise ValueError(f"{data}: expected a 'val' (or 'test') split to evaluate on, found only {list(splits)}")
    return "train", held_out


def weights_model(weights: str, model: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(registered model name, builder keywords)`` that ``weights`` were trained as: a published name's model,
    or the builder a checkpoint records (else the model its layout names); ``model`` where the weights cannot
    say (a bare member name such as ``COCO_V1``, a file of another layout) or to check that they agree."""
    member = lookup_weights(weights, model) if model is not None else lookup_weights(weights)
    if member is not None:
        return member.meta["model"], {}
    if not is_url(weights) and not os.path.isfile(weights):
        hint = "" if model else " (a bare weights name needs --model)"
        raise FileNotFoundError(f"--from {weights!r}: expected a checkpoint file, a URL or a published weights name "
                                f"such as ssd300_vgg16.COCO_V1 (ssd-zoo list){hint}, found none of them")
    checkpoint = read_weights(weights if is_url(weights) else Path(weights))
    saved = (checkpoint.record or {}).get("builder")
    if saved is not None and (model is None or saved["name"] == model):
        return saved["name"], dict(saved["kwargs"])
    if model is not None:
        return model, {}
    return checkpoint.architecture()


def model_keys(weights: str | None, model: str | None, input_size: int | None) -> dict[str, Any]:
    """The config keys of the model: ``model``, ``backbone``, ``input_size``, ``model_kwargs``, ``pad_to_square``,
    ``init_weights``. Without ``weights`` (and ``model``), :data:`SMALL_MODEL` from scratch."""
    if weights is None and model is None:
        keys = {**SMALL_MODEL, "model_kwargs": dict(SMALL_MODEL["model_kwargs"]), "init_weights": None}
        if input_size is not None and input_size != SMALL_MODEL["input_size"]:
            keys["input_size"] = input_size
            keys["model_kwargs"] = {k: v for k, v in keys["model_kwargs"].items() if k not in SIZED_FOR}
        return keys
    name, kwargs = weights_model(weights, model) if weights is not None else (model, {})
    keys = {"model": name, "backbone": kwargs.pop("backbone", None), "input_size": kwargs.pop("input_size", None),
            "pad_to_square": kwargs.pop("resize", None) == "letterbox", "init_weights": weights}
    kwargs.pop("pad_fill", None)  # pad_to_square brings the one padding colour back
    if input_size is not None and input_size != keys["input_size"]:
        if name != "ssd":
            raise ValueError(f"--input-size {input_size}: model {name!r} has a fixed input; only model 'ssd' (timm "
                             "backbones at any size) takes another")
        keys["input_size"] = input_size  # a checkpoint trained at another size says so when it is loaded
    return {**keys, "model_kwargs": kwargs}


def schedule_keys(num_train: int, batch_size: int, epochs: int | None, finetune: bool) -> dict[str, Any]:
    """``batch_size`` (at most the training images), ``max_iters`` (``epochs`` whole epochs; by default enough for
    :data:`STEPS`), warm-up (:data:`WARMUP`, at most a tenth), a checkpoint each epoch, logs ~20 times a run."""
    if num_train < 1:
        raise ValueError("the training split holds no image")
    batch_size = min(batch_size, num_train)
    per_epoch = num_train // batch_size  # the loader drops the last, incomplete batch
    kind = "finetune" if finetune else "scratch"
    epochs = epochs if epochs is not None else max(1, math.ceil(STEPS[kind] / per_epoch))
    if epochs < 1:
        raise ValueError(f"--epochs: expected at least 1, found {epochs}")
    max_iters = epochs * per_epoch
    return {"batch_size": batch_size, "base_batch_size": batch_size, "max_iters": max_iters,
            "warmup_iters": min(WARMUP[kind], max_iters // 10), "checkpoint_every": per_epoch,
            "log_every": max(1, min(50, max_iters // 20)), "eval_every": 0}


def config_for_data(data: str | os.PathLike, *, weights: str | None = None, model: str | None = None,
                    out: str | os.PathLike = "runs/train", epochs: int | None = None, batch_size: int = BATCH_SIZE,
                    input_size: int | None = None, device: str | None = None, amp: bool = False, workers: int = 0,
                    extra: dict[str, Any] | None = None) -> TrainConfig:
    """The :class:`TrainConfig` that trains on ``data`` (see the module docstring) into ``out``.

    ``weights``: what to start from (any weights ssd_zoo loads; None: from scratch); ``model``: the registered
    model where the weights do not say; ``epochs``: passes over the training split (default: a fixed number of
    steps, :data:`STEPS`); ``device``: default CUDA when there is one; ``extra``: more config keys, set last."""
    train_split, held_out = data_splits(data)
    num_train = len(open_dataset(data, train_split))
    keys = model_keys(weights, model, input_size)
    finetune = keys["init_weights"] is not None
    values = {**OPTIMISATION, **keys, **schedule_keys(num_train, batch_size, epochs, finetune),
              "data": os.fspath(data), "train_splits": train_split, "test_split": held_out, "keep_difficult": False,
              "augment": dict(AUGMENT), "num_workers": workers, "device": device or ("cuda" if torch.cuda.is_available() else "cpu"),
              "amp": amp, "output_dir": os.fspath(out), "draw": 8, "tensorboard": False, "eval_batch_size": 16}
    return TrainConfig(**{**values, **(extra or {})})
