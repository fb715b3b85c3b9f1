"""The training configuration: one flat dataclass with commented defaults (as nanoGPT's train.py).

A YAML file sets any subset of the fields; ``--set key=value`` overrides them on the command line (the value
is parsed as YAML, so ``--set lr=0.01``, ``--set lr_steps=[1000,2000]`` and ``--set amp=true`` work). The
defaults are the SSD paper's VOC schedule (Liu et al. 2016, sec. 3.1 and 3.6).
"""
from __future__ import annotations

import dataclasses
import math
import re
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
    # --- fine-tuning (docs/finetuning.md) ---
    init_weights: str | None = None  # start from these weights: any ssd_zoo.build weights= (a published name such as
    #   COCO_V1, a checkpoint path in any layout, a URL); the dataset's class names go through head surgery (the rows
    #   of classes the weights know are kept). The weights bring the backbone: backbone_init is not used.
    weights_class_names: list[str] | None = None  # the classes of init_weights (and of eval_voc.py's --weights), labels
    #   1..K in the file's order, for a file that records none; overrides what the file records or implies
    freeze: str = "none"  # "none" | "backbone" | "backbone+extras": no gradient, BatchNorm statistics fixed
    head_lr_mult: float = 1.0  # the heads' learning rate as a multiple of lr (e.g. 10 with a frozen or slow backbone)
    # --- data (a VOCdevkit folder; own data: VOC layout with class_names, or COCO JSON via coco_*, or any format via data) ---
    data: str | None = None  # a dataset in any format ssd_zoo.data.open_dataset opens (VOC folder, COCO .json or a folder
    #   of them, YOLO data.yaml): train_splits and test_split then name its splits (train, val, test); data_root unused
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
    device: str = "cuda"  # "cuda", "cuda:N" or "cpu" (cuda without a GPU is an error that says to pass --device cpu)
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

    def __post_init__(self) -> None:
        check_config(self)


class ConfigValueError(ValueError):
    """A config value out of range or of the wrong type; ``key`` is the field's name, ``where`` the file (or
    "the command line") that set it, when known."""

    def __init__(self, key: str, expected: str, value: Any, where: str | Path | None = None) -> None:
        super().__init__(f"{f'{where}: ' if where else ''}{key}: expected {expected}, found {value!r}")
        self.key, self.expected, self.value = key, expected, value


# The ranges of the numbers a user sets: (smallest, largest, whether the smallest itself is allowed).
INF = float("inf")
INT_RANGES: dict[str, tuple[int, float]] = {
    "batch_size": (1, INF), "base_batch_size": (1, INF), "max_iters": (1, INF), "warmup_iters": (0, INF),
    "log_every": (1, INF), "checkpoint_every": (1, INF), "eval_every": (0, INF), "eval_batch_size": (1, INF),
    "num_workers": (0, INF), "draw": (0, INF), "seed": (0, INF), "input_size": (1, INF), "threads": (1, INF),
}
FLOAT_RANGES: dict[str, tuple[float, float, bool]] = {  # (low, high, low included); high always included
    "lr": (0.0, INF, False), "momentum": (0.0, 1.0, True), "weight_decay": (0.0, INF, True),
    "lr_gamma": (0.0, INF, False), "warmup_factor": (0.0, 1.0, False), "grad_clip": (0.0, INF, False),
    "draw_score": (0.0, 1.0, True),
}
CHOICES = {"optimizer": ("sgd", "adamw"), "schedule": ("multistep", "cosine")}
OPTIONAL = {"input_size", "threads", "grad_clip"}  # None is allowed


def _check_number(cfg: TrainConfig, key: str) -> None:
    """``cfg.<key>`` in its range (INT_RANGES / FLOAT_RANGES); a float given as text (``1e-3``: YAML 1.1 reads
    it as a string) is converted in place."""
    value = getattr(cfg, key)
    if value is None and key in OPTIONAL:
        return
    if key in INT_RANGES:
        low, high = INT_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigValueError(key, f"an integer >= {low}" + (" (or null)" if key in OPTIONAL else ""), value)
        return
    low, high, closed = FLOAT_RANGES[key]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigValueError(key, "a number", value) from None
        setattr(cfg, key, value)
    inside = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        low <= value <= high if closed else low < value <= high)
    if not inside:
        bounds = f"{'[' if closed else '('}{low}, {high}{']' if high < INF else ')'}"
        raise ConfigValueError(key, f"a finite number in {bounds}" + (" (or null)" if key in OPTIONAL else ""), value)


def check_config(cfg: TrainConfig) -> None:
    """Raise :class:`ConfigValueError` naming the first key whose value is out of range or of the wrong type."""
    for key in (*INT_RANGES, *FLOAT_RANGES):
        _check_number(cfg, key)
    for key, choices in CHOICES.items():
        if getattr(cfg, key) not in choices:
            raise ConfigValueError(key, f"one of {list(choices)}", getattr(cfg, key))
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(cfg.device)):
        raise ConfigValueError("device", "'cpu', 'cuda' or 'cuda:N'", cfg.device)
    steps = cfg.lr_steps
    if not isinstance(steps, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in steps):
        raise ConfigValueError("lr_steps", "a list of iterations (integers >= 0)", steps)
    for key in ("sync_bn", "keep_difficult", "pad_to_square", "skip_nonfinite", "amp", "tensorboard"):
        if not isinstance(getattr(cfg, key), bool):
            raise ConfigValueError(key, "true or false", getattr(cfg, key))
    for key in ("model_kwargs", "augment"):
        if not isinstance(getattr(cfg, key), dict):
            raise ConfigValueError(key, "a mapping of keywords", getattr(cfg, key))


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


def _read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML file at ``path``; FileNotFoundError / ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        found = "a folder" if path.is_dir() else "nothing there"
        raise FileNotFoundError(f"--config: expected a YAML file at {str(path)!r}, found {found}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ValueError(f"{path}: expected a YAML mapping of config keys, found invalid YAML{line} ({problem})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: expected a UTF-8 text file of YAML, found undecodable bytes ({error.reason} at "
                         f"byte {error.start})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a YAML mapping of config keys, found {type(loaded).__name__}")
    return loaded


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides``; unknown keys and values out of
    range raise ValueError naming the file (or the command line) and the key."""
    values: dict[str, Any] = _read_yaml(path) if path is not None else {}
    from_file = set(values)
    values.update(overrides or {})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{path or 'config'}: unknown keys {unknown}; expected some of {sorted(names)}")
    try:
        return TrainConfig(**values)
    except ConfigValueError as error:
        where = path if error.key in from_file and error.key not in (overrides or {}) else "the command line"
        raise ConfigValueError(error.key, error.expected, error.value, where or "config") from None
