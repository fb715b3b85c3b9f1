"""torch.hub entry points: one per registered ssd_zoo model, generated from the registry.

    model = torch.hub.load("<owner>/ssd_zoo", "ssd300_vgg16", weights="VOC0712")
    model = torch.hub.load("/path/to/ssd_zoo", "ssd300_vgg16", source="local", weights=None)

Every keyword reaches the model's builder (``weights``, ``num_classes``, ``anchors``, ``score_thresh``, ...).
Imports stay light: ssd_zoo itself, which needs torch and torchvision (timm only for timm backbones, lazily).
"""
from __future__ import annotations

from typing import Any as _Any, Callable as _Callable

import ssd_zoo as _ssd_zoo
from ssd_zoo import registry as _registry
from ssd_zoo import weights as _weights

dependencies = ["torch", "torchvision"]


def _entry_point(name: str) -> _Callable[..., _Any]:
    builder = _registry.get_builder(name)

    def entry(**kwargs: _Any) -> _Any:
        return _registry.build(name, **kwargs)  # as ssd_zoo.build: class_names=, head surgery, the builder recorded

    names = _weights.list_weights(name)
    listed = ", ".join(f"'{n.split('.')[-1]}'" for n in names) if names else "none published; pass a checkpoint path"
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{(builder.__doc__ or name).strip()}\n\nWeights: {listed}.\n"
    return entry


for _name in _ssd_zoo.list_models():
    globals()[_name] = _entry_point(_name)
del _name
