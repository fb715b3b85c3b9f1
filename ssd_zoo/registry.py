"""The model registry: named builders, listed and built by name (as timm's ``create_model``).

A builder is a function ``(*, weights=None, num_classes=None, **kwargs) -> nn.Module`` registered under
its own ``__name__``.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable

from collections.abc import Sequence

from torch import nn

from .surgery import BACKGROUND, check_class_names
from .weights import retarget_weights

Builder = Callable[..., nn.Module]
_MODELS: dict[str, Builder] = {}


def register_model(fn: Builder) -> Builder:
    """Decorator: register ``fn`` under ``fn.__name__``; a name registered twice raises ValueError."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models that match the fnmatch ``pattern`` (e.g. ``"*mobilenet*"``)."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def get_builder(name: str) -> Builder:
    """The builder registered as ``name``; an unknown name raises ValueError with close matches."""
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; registered: {', '.join(list_models())}"
        raise ValueError(f"unknown model {name!r}{hint}")
    return _MODELS[name]


def build(name: str, *, weights: Any = None, num_classes: int | None = None,
          class_names: Sequence[str] | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; keyword arguments reach its builder (and the SSD constructor).

    ``class_names``: the names of labels ``1..K`` (no background); ``num_classes`` is then ``K + 1`` and the
    model's ``class_names`` are ``["__background__", *class_names]``. Weights for other classes than asked
    for (``num_classes`` or ``class_names``) go through head surgery (:mod:`ssd_zoo.surgery`): every tensor
    loads but the class predictors, whose rows of classes the weights know (by name) are carried over and
    whose other rows start as the model initialises them, with one :class:`~ssd_zoo.surgery.HeadSurgeryWarning`.

    A model with ``remember_builder`` (every SSD) is told ``name`` and ``kwargs``, which its checkpoints record,
    so that a saved model can be rebuilt from its file alone (``ssd-zoo detect --weights FILE``).
    """
    builder = get_builder(name)
    names = None
    if class_names is not None:
        names = [BACKGROUND, *check_class_names(class_names, num_classes)]
        num_classes = len(names)
    model = builder(weights=retarget_weights(weights, name, num_classes, names), num_classes=num_classes, **kwargs)
    if names is not None:
        model.class_names = names
    remember = getattr(model, "remember_builder", None)
    if remember is not None:
        remember(name, kwargs)
    return model
