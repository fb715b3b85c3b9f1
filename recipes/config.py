"""The training recipe's configuration: one flat dataclass with commented defaults (as nanoGPT's train.py).

A YAML file sets any subset of the fields; ``--set key=value`` overrides them on the command line (the value
is parsed as YAML, so ``--set lr=0.01``, ``--set lr_steps=[1000,2000]`` and ``--set amp=true`` work). The
defaults are the SSD paper's VOC schedule (Liu et al. 2016, sec. 3.1 and 3.6).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class TrainConfig:
    # --- model ---
    model: str = "ssd300_vgg16"  # a name from ssd_zoo.list_models(), or "ssd" (a timm backbone at input_size)
    backbone: str | None = None  # timm model name, for the generic builders ("ssd300", "ssd512", "ssd")
    input_size: int | None = None  # only for model="ssd": any square size (e.g. 192); maps from strides 8/16/32
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # more builder keywords (anchors, extra_channels...)
    backbone_init: str | None = None  # VGG16 only: vgg16_reducedfc.pth or torchvision's vgg16_features-*.pth
    sync_bn: bool = False  # SyncBatchNorm across processes (BN backbones under torchrun)
    # --- fine-tuning (README "Fine-tune on your data") ---
    init_weights: str | None = None  # start from these weights: any ssd_zoo.build weights= (a published name such as
    #   COCO_V1, a checkpoint path in any layout, a URL); the dataset's class names go through head surgery (the rows
    #   of classes the weights know are kept). The weights bring the backbone: backbone_init is not used.
    freeze: str = "none"  # "none" | "backbone" | "backbone+extras": no gradient, BatchNorm statistics fixed
    head_lr_mult: float = 1.0  # the heads' learning rate as a multiple of lr (e.g. 10 with a frozen or slow backbone)
    # --- data (a VOCdevkit folder; own data: VOC layout with class_names, or COCO JSON via coco_*) ---
    data_root: str = "data/VOCdevkit"
    train_splits: str = "2007-trainval+2012-trainval"
    test_split: str = "2007-test"
    class_names: list[str] | None = None  # None: VOC's 20 classes, or the root's classes.txt
    coco_train: list[str] | None = None  # [image_dir, ann_file]: train on a COCO-format dataset instead
    coco_test: list[str] | None = None  # [image_dir, ann_file]: evaluate (VOC mAP) on a COCO-format dataset
    keep_difficult: bool = False  # train on boxes marked difficult (the paper does not)
    augment: dict[str, Any] = field(default_factory=dict)  # keywords of ssd_zoo.data.SSDAugmentation
    pad_to_square: bool = False  # keep aspect ratios: the model letterboxes (resize="letterbox"; train images padded first)
    num_workers: int = 4
    # --- optimisation (lr, iterations and steps are given for base_batch_size and scaled to batch_size) ---
    batch_size: int = 32
    base_batch_size: int = 32
    optimizer: str = "sgd"  # "sgd" (momentum) or "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "multistep"  # "multistep" (x lr_gamma at lr_steps) or "cosine" (to 0 at max_iters)
    lr_steps: list[int] = field(default_factory=lambda: [80000, 100000])
    lr_gamma: float = 0.1
    warmup_iters: int = 500  # linear warm-up from lr * warmup_factor
    warmup_factor: float = 0.001
    max_iters: int = 120000
    grad_clip: float | None = None  # max gradient norm, None: no clipping
    skip_nonfinite: bool = False  # skip a step whose loss is NaN/inf instead of stopping the run
    # --- precision and device ---
    device: str = "cuda"  # "cuda" or "cpu" (cuda without a GPU is an error that says to pass --device cpu)
    amp: bool = False  # fp16 + GradScaler on CUDA, bf16 autocast on the CPU
    seed: int = 0
    threads: int | None = None  # torch.set_num_threads; None: torch's default (one per core)
    # --- records ---
    output_dir: str = "runs/ssd300_vgg16_voc0712"
    log_every: int = 20  # iterations between JSONL / TensorBoard records
    checkpoint_every: int = 5000  # iterations between last.pth writes (and at the end)
    eval_every: int = 10000  # iterations between evaluations (0: only at the end)
    eval_batch_size: int = 16
    draw: int = 0  # test images saved with their detections drawn at the final evaluation
    draw_score: float = 0.5  # smallest score drawn
    tensorboard: bool = True


def _scaled(value: int, factor: float) -> int:
    return max(1, round(value * factor))


def scale_to_batch(cfg: TrainConfig) -> TrainConfig:
    """Linear scaling: ``lr * B / B0``; iteration counts (``max_iters``, ``lr_steps``, ``warmup_iters``,
    ``eval_every``, ``checkpoint_every``) ``* B0 / B``, so the schedule sees the same number of images.
    ``B`` is the global batch (``batch_size`` per process times processes, set by the caller)."""
    factor = cfg.base_batch_size / cfg.batch_size
    if factor == 1:
        return cfg
    return dataclasses.replace(
        cfg, lr=cfg.lr / factor, max_iters=_scaled(cfg.max_iters, factor),
        lr_steps=[_scaled(s, factor) for s in cfg.lr_steps], warmup_iters=_scaled(cfg.warmup_iters, factor) if cfg.warmup_iters else 0,
        eval_every=_scaled(cfg.eval_every, factor) if cfg.eval_every else 0,
        checkpoint_every=_scaled(cfg.checkpoint_every, factor), base_batch_size=cfg.batch_size,
    )


def parse_override(item: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)`` with the value parsed as YAML; ValueError for an unknown key."""
    key, sep, text = item.partition("=")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if not sep or key not in names:
        raise ValueError(f"--set {item!r}: expected key=value with key one of {sorted(names)}")
    return key, yaml.safe_load(text)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides``; unknown keys raise ValueError."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a YAML mapping of config keys, found {type(loaded).__name__}")
        values.update(loaded)
    values.update(overrides or {})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{path or 'config'}: unknown keys {unknown}; expected some of {sorted(names)}")
    return TrainConfig(**values)
