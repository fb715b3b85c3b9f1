"""Reading a frozen TensorFlow GraphDef without TensorFlow: its nodes, constants, and the convolution program
from one set of tensors back to another.

Why tensorboard's protocol buffers: a frozen graph is a serialised ``tensorflow.GraphDef``, and parsing one needs
the message classes compiled from TensorFlow's ``.proto`` files. ``tensorboard`` ships exactly those
(``tensorboard.compat.proto.graph_pb2``, with ``tensor_util.make_ndarray`` for the constants), needs only
``protobuf`` and ``numpy``, and is already one of ssd_zoo's optional dependencies (the recipes' training logs),
so reading a graph costs nothing new; TensorFlow itself would be a 500 MB dependency for a parser, and compiling
our own copy of the ``.proto`` files would be a second copy of them to keep current.

:class:`GraphDef` resolves names (``"node:0"``, ``Identity`` chains) and constants; :func:`trace` walks the
graph from output tensors back to a stop set and returns the :class:`~ssd_zoo.models.tf_graph.Step` program
(``Conv2D`` / ``DepthwiseConv2dNative`` + ``FusedBatchNorm`` / ``BiasAdd`` + ``Relu6`` / ``Relu`` units and
residual ``Add``) with each unit's tensors in PyTorch's layout. A batch norm that the graph computes unfused
(``x * (gamma * rsqrt(var + eps)) + (beta - mean * ...)``, constants only on one side) is folded into the unit's
convolution weights and bias. An op it does not know raises, naming it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ssd_zoo.models.tf_graph import INPUT, Step
from ssd_zoo.models.tf_layers import ConvSpec

CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")
NORM_OPS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
ACTIVATION_OPS = {"Relu6": "relu6", "Relu": "relu"}
ADD_OPS = ("Add", "AddV2")
_SHAPE_OPS = ("Shape", "Size", "Rank")  # read a tensor's shape, not its values: not a consumer of the values


def _proto() -> Any:
    try:
        from tensorboard.compat.proto import graph_pb2
    except ImportError as error:  # tensorboard is an optional dependency
        raise ImportError("reading a TensorFlow frozen graph (.pb) needs tensorboard's protocol buffers: "
                          "pip install tensorboard (TensorFlow itself is not needed)") from error
    return graph_pb2


class GraphDef:
    """A parsed frozen graph: ``nodes`` by name, constants as numpy arrays, names resolved through ``Identity``.

    Args:
        path: a ``frozen_inference_graph.pb``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        graph = _proto().GraphDef()
        try:
            graph.ParseFromString(Path(path).read_bytes())
        except Exception as error:  # protobuf's DecodeError, or a message of another type
            raise ValueError(f"{path}: expected a TensorFlow frozen GraphDef (.pb), could not parse it ({error})") from error
        if not graph.node:
            raise ValueError(f"{path}: expected a TensorFlow frozen GraphDef (.pb), found no nodes")
        self.nodes = {node.name: node for node in graph.node}
        self.consumers = Counter(self.resolve(name) for node in graph.node if node.op not in _SHAPE_OPS
                                 for name in node.input if not name.startswith("^"))

    def resolve(self, name: str) -> str:
        """The node that computes ``name`` (``"x:0"`` -> ``"x"``), through ``Identity`` nodes."""
        name = name.lstrip("^").split(":")[0]
        while name in self.nodes and self.nodes[name].op == "Identity":
            name = self.nodes[name].input[0].split(":")[0]
        return name

    def node(self, name: str) -> Any:
        resolved = self.resolve(name)
        if resolved not in self.nodes:
            raise ValueError(f"{self.path}: expected a node {name!r}, found none")
        return self.nodes[resolved]

    def has(self, name: str) -> bool:
        return self.resolve(name) in self.nodes

    def const(self, name: str) -> np.ndarray:
        """The value of the constant ``name`` (through ``Identity``); ValueError if it is computed."""
        node = self.node(name)
        if node.op != "Const":
            raise ValueError(f"{self.path}: expected {name!r} to be a constant, found a {node.op} node")
        from tensorboard.util import tensor_util
        return tensor_util.make_ndarray(node.attr["value"].tensor)

    def evaluate(self, name: str) -> np.ndarray | None:
        """The value of ``name`` where it depends on constants only, through the arithmetic of an unfolded batch
        norm (``Add``, ``Sub``, ``Mul``, ``RealDiv``, ``Rsqrt``, ``Sqrt``); None where it depends on the input."""
        node = self.nodes.get(self.resolve(name))
        if node is None:
            return None
        if node.op == "Const":
            return self.const(node.name)
        unary = {"Rsqrt": lambda a: 1 / np.sqrt(a), "Sqrt": np.sqrt}
        binary = {"Add": np.add, "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply, "RealDiv": np.divide}
        if node.op not in unary and node.op not in binary:
            return None
        args = [self.evaluate(i) for i in node.input if not i.startswith("^")]
        if any(a is None for a in args):
            return None
        args = [a.astype(np.float32) for a in args]
        return unary[node.op](*args) if node.op in unary else binary[node.op](*args)

    def find(self, predicate: Callable[[Any], bool]) -> list[Any]:
        """Nodes for which ``predicate(node)`` holds, in the graph's order."""
        return [node for node in self.nodes.values() if predicate(node)]


def _affine(graph: GraphDef, node: Any) -> tuple[str, np.ndarray] | None:
    """``(the non-constant input, the constant)`` of a ``Mul`` / ``Add`` / ``Sub`` by a per-channel constant
    (``x - c`` only for ``Sub``), None where both or neither input is constant."""
    first, second = node.input[0], node.input[1]
    a, b = graph.evaluate(first), graph.evaluate(second)
    if (a is None) == (b is None):
        return None
    if b is not None:
        return graph.resolve(first), b
    return (graph.resolve(second), a) if node.op != "Sub" else None


@dataclass
class _Unit:
    """A convolution unit being traced: its spec so far, tensors (PyTorch layout) and last node."""

    path: str
    input: str
    spec: ConvSpec
    tail: str
    tensors: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Program:
    """What :func:`trace` found: ``steps`` in an executable order, ``values`` (graph node -> value name),
    ``tensors`` (value name of a conv unit -> its ``{"conv.weight", "bn.weight", ...}``)."""

    steps: list[Step]
    values: dict[str, str]
    tensors: dict[str, dict[str, Tensor]]


def _conv_tensors(graph: GraphDef, node: Any) -> tuple[ConvSpec, Tensor]:
    """A ``Conv2D`` / ``DepthwiseConv2dNative`` node's :class:`ConvSpec` and weight, ``[out, in/groups, k, k]``."""
    attr = node.attr
    where = f"{graph.path}: {node.name}"
    if attr["data_format"].s not in (b"", b"NHWC"):
        raise ValueError(f"{where}: expected data_format NHWC, found {attr['data_format'].s.decode()}")
    strides, dilations = list(attr["strides"].list.i), list(attr["dilations"].list.i) or [1, 1, 1, 1]
    weight = graph.const(node.input[1])  # HWIO (Conv2D) or HW, in, multiplier (depthwise)
    if weight.shape[0] != weight.shape[1] or strides[1] != strides[2] or dilations[1] != dilations[2]:
        raise ValueError(f"{where}: expected a square kernel, stride and dilation, found kernel {weight.shape[:2]}, "
                         f"strides {strides}, dilations {dilations}")
    kernel, in_ch = weight.shape[0], weight.shape[2]
    depthwise = node.op == "DepthwiseConv2dNative"
    out_ch = in_ch * weight.shape[3] if depthwise else weight.shape[3]
    # Depthwise: output channel c * multiplier + m reads input channel c (TensorFlow and PyTorch alike).
    w = weight.reshape(kernel, kernel, out_ch).transpose(2, 0, 1)[:, None] if depthwise else weight.transpose(3, 2, 0, 1)
    spec = ConvSpec(int(in_ch), int(out_ch), int(kernel), int(strides[1]), int(dilations[1]), depthwise,
                    attr["padding"].s.decode())
    return spec, torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))


class _Tracer:
    """Walks a graph back from output nodes (depth first, so every input is traced before its reader), one
    method per kind of op; see :func:`trace`."""

    def __init__(self, graph: GraphDef, is_input: Callable[[str], bool], module_path: Callable[[str], str]) -> None:
        self.graph, self.is_input, self.module_path = graph, is_input, module_path
        self.steps: list[Step | _Unit] = []
        self.values: dict[str, str] = {}  # graph node -> value name (a unit's module path, an add's path, INPUT)
        self.units: dict[str, _Unit] = {}

    def value(self, name: str) -> str:
        """The value name of node ``name``, tracing it (and what it reads) on first use."""
        name = self.graph.resolve(name)
        if name not in self.values:
            if self.is_input(name):
                self.values[name] = INPUT
            else:
                self.values[name] = self._trace(self.graph.node(name))
        return self.values[name]

    def _trace(self, node: Any) -> str:
        if node.op in CONV_OPS:
            return self._conv(node)
        if node.op in NORM_OPS:
            return self._norm(node)
        if node.op == "BiasAdd":
            unit = self._open(node, "convolution", forbid=("norm", "bias", "activation"))
            unit.tensors["conv.bias"] = torch.from_numpy(self.graph.const(node.input[1]).astype(np.float32))
            return self._extend(unit, node, bias=True)
        if node.op in ACTIVATION_OPS:
            unit = self._open(node, "convolution, normalisation or bias", forbid=("activation",))
            return self._extend(unit, node, activation=ACTIVATION_OPS[node.op])
        if node.op in ("Mul", *ADD_OPS, "Sub") and _affine(self.graph, node) is not None:
            return self._fold_affine(node)
        if node.op in ADD_OPS:
            inputs = tuple(self.value(i) for i in node.input[:2])
            path = self.module_path(node.name)
            self.steps.append(Step("add", path, inputs))
            return path
        raise ValueError(f"{self.graph.path}: {node.name} is a {node.op} node; the network ops ssd_zoo reads are "
                         f"{[*CONV_OPS, *NORM_OPS, 'BiasAdd', *ACTIVATION_OPS, *ADD_OPS]} and Mul/Add/Sub by a "
                         "constant right after a convolution (an unfused batch norm)")

    def _conv(self, node: Any) -> str:
        source = self.value(node.input[0])
        spec, weight = _conv_tensors(self.graph, node)
        path = self.module_path(node.name.rsplit("/", 1)[0])
        if path in self.units:
            raise ValueError(f"{self.graph.path}: two convolutions in the scope of {node.name}; expected one per unit")
        unit = self.units[path] = _Unit(path, source, spec, node.name, {"conv.weight": weight})
        self.steps.append(unit)
        return path

    def _norm(self, node: Any) -> str:
        unit = self._open(node, "convolution", forbid=("norm", "bias", "activation"))
        gamma, beta, mean, var = (torch.from_numpy(self.graph.const(i).astype(np.float32)) for i in node.input[1:5])
        unit.tensors.update({"bn.weight": gamma, "bn.bias": beta, "bn.running_mean": mean, "bn.running_var": var,
                             "bn.num_batches_tracked": torch.tensor(0)})
        return self._extend(unit, node, norm_eps=float(node.attr["epsilon"].f))

    def _fold_affine(self, node: Any) -> str:
        """An unfolded batch norm (``x * scale + shift``) or a constant bias: into the unit's conv weights and bias."""
        source, constant = _affine(self.graph, node)
        unit = self._open(node, "convolution or bias", source, forbid=("norm", "activation"))
        factor = torch.from_numpy(constant.astype(np.float32).reshape(-1))
        bias = unit.tensors.get("conv.bias", torch.zeros(unit.spec.out_channels))
        if node.op == "Mul":
            unit.tensors["conv.weight"] = unit.tensors["conv.weight"] * factor.view(-1, 1, 1, 1)
            bias = bias * factor
        else:
            bias = bias - factor if node.op == "Sub" else bias + factor
        unit.tensors["conv.bias"] = bias.expand(unit.spec.out_channels).clone()
        return self._extend(unit, node, bias=True)

    def _open(self, node: Any, stage: str, source: str | None = None, forbid: tuple[str, ...] = ()) -> _Unit:
        """The unit whose last node ``node`` follows (its only reader), checked to have none of ``forbid``."""
        source = self.graph.resolve(source or node.input[0])
        unit = self.units.get(self.value(source))
        if unit is None or unit.tail != source or self.graph.consumers[source] != 1:
            raise ValueError(f"{self.graph.path}: {node.name} ({node.op}) follows {source}, expected it to follow a "
                             f"convolution unit's {stage} that nothing else reads")
        present = {"norm": unit.spec.norm_eps is not None, "bias": unit.spec.bias, "activation": bool(unit.spec.activation)}
        found = [part for part in forbid if present[part]]
        if found:
            raise ValueError(f"{self.graph.path}: {node.name} ({node.op}) follows the {', '.join(found)} of unit "
                             f"{unit.path}; expected it before them")
        return unit

    def _extend(self, unit: _Unit, node: Any, **spec: Any) -> str:
        unit.spec = replace(unit.spec, **spec)
        unit.tail = node.name
        return unit.path


def trace(graph: GraphDef, outputs: list[str], is_input: Callable[[str], bool],
          module_path: Callable[[str], str]) -> Program:
    """The program that computes ``outputs`` (node names) from the node for which ``is_input`` holds.

    ``module_path(scope)``: the dotted module name of a unit from its TensorFlow scope (the conv node's name
    less its last part, e.g. ``FeatureExtractor/MobilenetV2/Conv``).
    """
    tracer = _Tracer(graph, is_input, module_path)
    for output in outputs:
        tracer.value(output)
    program = [Step("conv", s.path, (s.input,), s.spec) if isinstance(s, _Unit) else s for s in tracer.steps]
    return Program(program, tracer.values, {unit.path: unit.tensors for unit in tracer.units.values()})
