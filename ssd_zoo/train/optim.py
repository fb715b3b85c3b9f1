"""The optimiser and the learning-rate schedule of a training run.

Parameter groups: weights (decayed) and biases/norm scales (not), each for the body and for the heads (at
``lr * head_lr_mult``); frozen parameters are left out. The schedule is a factor of ``lr`` per iteration:
linear warm-up, then SSD's multi-step decay or a cosine to 0 at ``max_iters``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ssd_zoo.train.config import TrainConfig


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW; no weight decay on biases and norm scales; the heads' groups
    at ``lr * head_lr_mult`` (``lr_mult`` in each group); frozen parameters (no gradient) left out."""
    heads = {id(p) for p in model.head.parameters()}
    groups = []
    for mult, params in ((1.0, [p for p in model.parameters() if id(p) not in heads]),
                         (cfg.head_lr_mult, list(model.head.parameters()))):
        trained = [p for p in params if p.requires_grad]
        groups += [{"params": [p for p in trained if p.dim() > 1], "weight_decay": cfg.weight_decay, "lr_mult": mult},
                   {"params": [p for p in trained if p.dim() <= 1], "weight_decay": 0.0, "lr_mult": mult}]
    groups = [{**g, "lr": cfg.lr * g["lr_mult"]} for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"optimizer: expected 'sgd' or 'adamw', found {cfg.optimizer!r}")


def lr_factor(cfg: TrainConfig, iteration: int) -> float:
    """The learning rate at ``iteration`` as a multiple of ``cfg.lr``: linear warm-up, then the schedule."""
    warmup = 1.0
    if iteration < cfg.warmup_iters:
        warmup = cfg.warmup_factor + (1 - cfg.warmup_factor) * iteration / cfg.warmup_iters
    if cfg.schedule == "multistep":
        return warmup * cfg.lr_gamma ** sum(iteration >= step for step in cfg.lr_steps)
    if cfg.schedule == "cosine":
        return warmup * 0.5 * (1 + math.cos(math.pi * min(iteration, cfg.max_iters) / cfg.max_iters))
    raise ValueError(f"schedule: expected 'multistep' or 'cosine', found {cfg.schedule!r}")


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per iteration that sets every group to ``its lr * lr_factor(cfg, iteration)``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(cfg, i))
