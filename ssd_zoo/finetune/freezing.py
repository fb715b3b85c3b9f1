"""Freezing parts of an SSD for fine-tuning: no gradient, and BatchNorm statistics that stay as loaded.

    >>> frozen = freeze(model, "backbone")          # the feature extractor; extras and heads train
    >>> frozen = freeze(model, "backbone+extras")   # only the heads train

``"backbone"`` is ``model.backbone`` without its ``extras`` (the extra layers that make the smaller maps);
``"backbone+extras"`` is all of ``model.backbone``. Frozen parameters get ``requires_grad = False`` (an
optimiser built from the parameters that require gradients leaves them out), and every BatchNorm inside
stays in eval mode, also after ``model.train()``: it normalises with, and never updates, its running
statistics (as torchvision's detection models do with ``FrozenBatchNorm2d``, but with the module's own
class and state-dict keys, so checkpoints load into unfrozen models as they are).
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

FREEZE_CHOICES = ("none", "backbone", "backbone+extras")
_EVAL_CLASSES: dict[type, type] = {}


def _eval_class(cls: type) -> type:
    """``cls`` (a BatchNorm class) whose ``train(mode)`` keeps it in eval mode; one subclass per class."""
    if cls not in _EVAL_CLASSES:
        def train(self: nn.Module, mode: bool = True) -> nn.Module:
            return cls.train(self, False)

        _EVAL_CLASSES[cls] = type(f"Frozen{cls.__name__}", (cls,), {"train": train, "frozen_statistics": True})
    return _EVAL_CLASSES[cls]


def frozen_modules(model: nn.Module, part: str) -> list[nn.Module]:
    """The modules of ``model`` that ``part`` (one of :data:`FREEZE_CHOICES`) names; ValueError otherwise."""
    if part not in FREEZE_CHOICES:
        raise ValueError(f"freeze: expected one of {FREEZE_CHOICES}, found {part!r}")
    if part == "none":
        return []
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"freeze={part!r}: expected a model with a 'backbone' module, found {type(model).__name__}")
    if part == "backbone+extras":
        return [backbone]
    return [module for name, module in backbone.named_children() if name != "extras"]


def freeze(model: nn.Module, part: str) -> list[str]:
    """Freeze ``part`` of ``model`` in place (see the module docstring); returns the frozen parameters' names."""
    modules = frozen_modules(model, part)
    names = {id(p): n for n, p in model.named_parameters()}
    frozen = []
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
            frozen.append(names[id(parameter)])
        for norm in module.modules():
            if isinstance(norm, _BatchNorm) and not getattr(norm, "frozen_statistics", False):
                norm.__class__ = _eval_class(type(norm))
                norm.train(False)
    return frozen
