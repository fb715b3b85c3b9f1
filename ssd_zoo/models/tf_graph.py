"""An SSD's network as a TensorFlow graph computes it: a feature extractor and box predictors rebuilt from an
:class:`Architecture`, the plain-data description that :mod:`ssd_zoo.weights.tf_graphdef` reads out of a frozen
GraphDef (and that a saved model's record carries, so it is rebuilt without the graph).

The feature extractor is a program: convolution units (:class:`~ssd_zoo.models.tf_layers.TFConv`) and residual
additions in the graph's order, each reading a value named by the step that made it (``"image"`` is the
normalised input). Module names are the graph's scopes, ``/`` made ``.``: TensorFlow's
``FeatureExtractor/MobilenetV2/expanded_conv_1/expand`` is ``backbone.expanded_conv_1.expand`` here. Whatever
MobileNet (V1, V2, any depth multiplier) or extra layers the graph holds, the program is the graph's.

The box predictors are, per feature map, a chain of units for the class logits and one for the box encodings
(SSD: one 1x1 convolution; SSDLite: a 3x3 depthwise unit and a 1x1 convolution), laid out as
:class:`~ssd_zoo.models.head.SSDHead` lays out its own, so head surgery and fine-tuning find them.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from torch import Tensor, nn

from ssd_zoo.models.head import SSDHead
from ssd_zoo.models.tf_layers import ConvSpec, TFConv

INPUT = "image"  # the value the program starts from: the normalised [B, 3, S, S] batch


@dataclass(frozen=True)
class Step:
    """One step of the feature extractor: ``op`` ``"conv"`` (``conv`` applied to ``inputs[0]``) or ``"add"``
    (``inputs[0] + inputs[1]``); ``name`` is the value it makes and, for a conv, its module's path."""

    op: str
    name: str
    inputs: tuple[str, ...]
    conv: ConvSpec | None = None

    def to_dict(self) -> dict[str, object]:
        return {"op": self.op, "name": self.name, "inputs": list(self.inputs),
                **({"conv": self.conv.to_dict()} if self.conv is not None else {})}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> Step:
        conv = values.get("conv")
        return cls(str(values["op"]), str(values["name"]), tuple(values["inputs"]),
                   None if conv is None else ConvSpec.from_dict(conv))


@dataclass(frozen=True)
class Architecture:
    """A TF OD API SSD's network, as plain data.

    Attributes:
        steps: the feature extractor's program, in an order where every input is made before it is read.
        features: the values the box predictors read, one per level.
        classification, regression: per level, the ``(name, ConvSpec)`` chain that maps the level's feature map
            to class logits ``[B, k*C, H, W]`` / box encodings ``[B, k*4, H, W]``.
    """

    steps: tuple[Step, ...]
    features: tuple[str, ...]
    classification: tuple[tuple[tuple[str, ConvSpec], ...], ...]
    regression: tuple[tuple[tuple[str, ConvSpec], ...], ...]

    def to_dict(self) -> dict[str, object]:
        def chains(levels: tuple) -> list:
            return [[[name, spec.to_dict()] for name, spec in level] for level in levels]

        return {"steps": [s.to_dict() for s in self.steps], "features": list(self.features),
                "classification": chains(self.classification), "regression": chains(self.regression)}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> Architecture:
        def chains(levels: list) -> tuple:
            return tuple(tuple((str(name), ConvSpec.from_dict(spec)) for name, spec in level) for level in levels)

        return cls(tuple(Step.from_dict(s) for s in values["steps"]), tuple(values["features"]),
                   chains(values["classification"]), chains(values["regression"]))


def _add_module_at(root: nn.Module, path: str, module: nn.Module) -> None:
    """Register ``module`` at the dotted ``path`` under ``root``, making plain containers on the way."""
    *parents, leaf = path.split(".")
    node = root
    for part in parents:
        if not hasattr(node, part):
            node.add_module(part, nn.Module())
        node = getattr(node, part)
    if hasattr(node, leaf):
        raise ValueError(f"GraphBackbone: two steps make the module {path!r}")
    node.add_module(leaf, module)


class GraphBackbone(nn.Module):
    """``[B, 3, S, S]`` (normalised) -> the feature maps the box predictors read, by running
    :attr:`Architecture.steps`.

    Attributes:
        out_channels: channels of each returned map, read by the head.
    """

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        channels = {INPUT: 3}
        for step in architecture.steps:
            missing = [name for name in step.inputs if name not in channels]
            if missing:
                raise ValueError(f"GraphBackbone: step {step.name!r} reads {missing}, which no earlier step makes")
            if step.op == "conv":
                if channels[step.inputs[0]] != step.conv.in_channels:
                    raise ValueError(f"GraphBackbone: step {step.name!r} expects {step.conv.in_channels} channels, "
                                     f"found {channels[step.inputs[0]]} from {step.inputs[0]!r}")
                _add_module_at(self, step.name, TFConv(step.conv))
                channels[step.name] = step.conv.out_channels
            elif step.op == "add":
                channels[step.name] = channels[step.inputs[0]]
            else:
                raise ValueError(f"GraphBackbone: step {step.name!r}: expected op 'conv' or 'add', found {step.op!r}")
        # Not `steps`/`features`: those could be a graph's scope names, i.e. module names here.
        self._program = architecture.steps
        self._feature_names = architecture.features
        self.out_channels = [channels[name] for name in self._feature_names]

    def forward(self, x: Tensor) -> list[Tensor]:
        values = {INPUT: x}
        for step in self._program:
            if step.op == "conv":
                values[step.name] = self.get_submodule(step.name)(values[step.inputs[0]])
            else:
                values[step.name] = values[step.inputs[0]] + values[step.inputs[1]]
        return [values[name] for name in self._feature_names]


def _chain(units: tuple[tuple[str, ConvSpec], ...]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((name, TFConv(spec)) for name, spec in units))


class GraphPredictorHead(SSDHead):
    """The graph's box predictors; same contract as :class:`~ssd_zoo.models.head.SSDHead` (box-major channels,
    ``channel = box * C + class``, as TensorFlow's reshape to ``[B, H*W*k, C]`` lays them out too).

    The regression chains output ssd_zoo's ``(tx, ty, tw, th)`` order; the importer permutes the graph's
    ``(ty, tx, th, tw)`` rows of their last convolution accordingly.
    """

    def __init__(self, in_channels: list[int], boxes_per_location: list[int], num_classes: int, *,
                 architecture: Architecture) -> None:
        self.architecture = architecture  # read by predictor(), which SSDHead.__init__ calls
        if len(architecture.classification) != len(in_channels) or len(architecture.regression) != len(in_channels):
            raise ValueError(f"GraphPredictorHead: {len(in_channels)} feature maps, but the architecture has "
                             f"{len(architecture.classification)} class and {len(architecture.regression)} box chains")
        # SSDHead.__init__ asks for the predictors in this order: every level's classification, then regression.
        self._chains = iter([*architecture.classification, *architecture.regression])
        super().__init__(in_channels, boxes_per_location, num_classes)

    def predictor(self, in_channels: int, out_channels: int) -> nn.Module:
        """The next chain, its last convolution made ``out_channels`` wide (``k * C`` for a model of other
        classes than the graph's: head surgery then fills its rows)."""
        *units, (name, last) = next(self._chains)
        if units and units[0][1].in_channels != in_channels or not units and last.in_channels != in_channels:
            raise ValueError(f"GraphPredictorHead: a predictor chain starting at {in_channels} channels expected, "
                             f"found {(units[0][1] if units else last).in_channels}")
        return _chain((*units, (name, replace(last, out_channels=out_channels))))

    def reset_parameters(self) -> None:
        """Fresh class-predictor rows (head surgery) start as the OD API initialises its predictors: truncated
        normal weights (std 0.03) and zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.03, a=-0.06, b=0.06)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
