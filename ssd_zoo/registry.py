"""The model registry: named builders, listed and built by name (as timm's ``create_model``), and
:func:`load`: any checkpoint file, built as the registered model it fits.

A builder is a function ``(*, weights=None, num_classes=None, **kwargs) -> nn.Module`` registered under
its own ``__name__``.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from torch import nn
from torchvision.models import WeightsEnum

from ssd_zoo import files
from ssd_zoo.finetune.surgery import BACKGROUND, check_class_names
from ssd_zoo.weights.published import lookup_weights
from ssd_zoo.weights.resolve import default_categories, read_weights, retarget_weights

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
          class_names: Sequence[str] | None = None, weights_class_names: Sequence[str] | None = None,
          **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; keyword arguments reach its builder (and the SSD constructor).

    ``class_names``: the names of labels ``1..K`` (no background); ``num_classes`` is then ``K + 1`` and the
    model's ``class_names`` are ``["__background__", *class_names]``. Weights for other classes than asked
    for (``num_classes`` or ``class_names``) go through head surgery (:mod:`ssd_zoo.finetune.surgery`): every tensor
    loads but the class predictors, whose rows of classes the weights know (by name) are carried over and
    whose other rows start as the model initialises them, with one :class:`~ssd_zoo.finetune.surgery.HeadSurgeryWarning`.

    The weights' own class names are what the file records, else what :mod:`ssd_zoo.weights.file_classes`
    finds (a recognised published file, its layout's label space); ``weights_class_names`` (the file's labels
    ``1..K`` in its order, no background) overrides them all. Weights that name no classes: with as many
    classes as asked, every row is carried in order (a :class:`~ssd_zoo.finetune.surgery.ClassNamesWarning`);
    with another count, ``class_names`` alone raises ValueError, ``num_classes=`` starts the class rows afresh.

    A model with ``remember_builder`` (every SSD) is told ``name`` and ``kwargs``, which its checkpoints record,
    so that a saved model can be rebuilt from its file alone (``ssd-zoo detect --weights FILE``).
    """
    builder = get_builder(name)
    names, fresh_rows = None, num_classes is not None  # the caller asked for a class count itself
    if class_names is not None:
        names = [BACKGROUND, *check_class_names(class_names, num_classes)]
        num_classes = len(names)
    weights = retarget_weights(weights, name, num_classes, names, weights_class_names=weights_class_names,
                               fresh_rows=fresh_rows)
    model = builder(weights=weights, num_classes=num_classes, **kwargs)
    if names is not None:
        model.class_names = names
    remember = getattr(model, "remember_builder", None)
    if remember is not None:
        remember(name, kwargs)
    return model


def load(weights: Any, *, input_order: str | None = None, progress: bool = True, **kwargs: Any) -> nn.Module:
    """Any SSD checkpoint -> the registered model it fits, with its weights (``ssd_zoo.load``).

    Args:
        weights: a path or URL to a file in any registered layout (:data:`ssd_zoo.weights.convert.LAYOUTS`): ssd_zoo's
            own (the recipes' ``best.pth`` / ``last.pth`` too: rebuilt from the builder they record),
            torchvision's, ssd.pytorch's or any publisher's in :mod:`ssd_zoo.weights.publishers`; or a published entry
            (a ``WeightsEnum`` member or ``"<model>.<MEMBER>"``).
        input_order: "bgr" for a file trained on BGR images (published entries know their own).
        kwargs: reach :func:`build` (``weights_class_names=[...]`` names the file's classes) and the builder
            (e.g. ``score_thresh=0.5``).

    Returns:
        The model (train mode, as ``ssd_zoo.build``); ``categories``: the file's (as
        :mod:`ssd_zoo.weights.file_classes` finds them), else those of :func:`default_categories`.

    Raises:
        ValueError: a file in no known layout (naming the layouts and the file's first keys), or one whose
            keys or shapes do not fit the model its layout names.
    """
    member = weights if isinstance(weights, WeightsEnum) else None
    if member is None and isinstance(weights, str) and not files.is_url(weights) and not os.path.isfile(weights):
        member = lookup_weights(weights)
    if member is not None:
        return build(member.meta["model"], weights=member, **kwargs)
    source = os.fspath(weights)
    checkpoint = read_weights(source if files.is_url(source) else Path(source), input_order, progress)
    name, builder_kwargs = checkpoint.architecture()
    model = build(name, weights=checkpoint, **{**builder_kwargs, **kwargs})
    if getattr(model, "categories", "") is None:
        model.categories = default_categories(model.num_classes)
    return model
