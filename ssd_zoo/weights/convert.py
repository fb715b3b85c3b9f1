"""State-dict converters between ssd_zoo and other SSD projects' layouts: pure functions on key tables.

Each layout is data, described once: a table ``ssd_zoo key -> other project's key`` and the tensor
permutations it needs (conv1_1's input channels for BGR-trained weights). The conversion in either direction
reads that table, and any missing or unexpected key raises an error that lists them all (mis-shaped tensors
are reported when the result is loaded, see :func:`ssd_zoo.weights.resolve.load_state_dict`). This module imports
nothing else of ssd_zoo but :mod:`ssd_zoo.models.record` (a leaf), so that a converter takes ``model.state_dict()``
as it is and leaves ssd_zoo's model record out. A conversion for a project that decodes with its own default boxes
refuses a model trained with others through the check a publisher module registers on the layout (:func:`set_check`;
torchvision's: :func:`ssd_zoo.weights.publishers.tv.check_torchvision_boxes`).

Layouts are registered (:class:`Layout`, :func:`register_layout`): detection (:func:`detect_layout`) and
conversion (:func:`to_ssd_zoo`, :func:`from_ssd_zoo`) dispatch through the registry. The three below are
registered here; each publisher module in :mod:`ssd_zoo.weights.publishers` registers its own.
- ``"ssd_zoo"``: this project (``backbone.features.conv1_1.weight``, ``head.classification.0.weight``, ...).
- ``"torchvision"``: ``torchvision.models.detection.ssd300_vgg16`` (``backbone.features.0.weight``,
  ``backbone.scale_weight``, ``head.classification_head.module_list.0.weight``, ...).
- ``"ssd.pytorch"``: amdegroot/ssd.pytorch and the simple SSDs derived from it (``vgg.0.weight``,
  ``L2Norm.weight``, ``extras.0.weight``, ``loc.0.weight``, ``conf.0.weight``).

All three order a level's head channels box-major (``channel = box * C + class``), so head tensors are
copied unchanged. Command line: ``ssd-zoo convert --from ssd.pytorch IN.pth OUT.pth`` (:mod:`ssd_zoo.cli`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

from ssd_zoo.models.record import split_record

InputOrder = Literal["rgb", "bgr"]

_VGG_CONVS = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "3_3", "4_1", "4_2", "4_3", "5_1", "5_2", "5_3"]
# Where VGG16's convs sit in torchvision's `vgg16().features` and in ssd.pytorch's `vgg` list (conv, ReLU, pool).
_VGG_INDICES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
_FC6_INDEX, _FC7_INDEX = 31, 33  # ssd.pytorch: pool5 at 30, dilated fc6 at 31, ReLU, fc7 at 33
_FIRST_CONV = "backbone.features.conv1_1.weight"


def _conv_keys(table: dict[str, str]) -> dict[str, str]:
    """Conv module names -> their ``.weight`` and ``.bias`` parameter names."""
    return {f"{src}.{p}": f"{dst}.{p}" for src, dst in table.items() for p in ("weight", "bias")}


def _ssd_zoo_vgg_name(conv: str) -> str:
    """``"4_3"`` -> ``"backbone.features.conv4_3"``; conv5_x live after pool4, in ``backbone.fc``."""
    return f"backbone.{'fc' if conv.startswith('5') else 'features'}.conv{conv}"


def _extras_and_head(num_levels: int, extra: Callable[[int, int], str], cls: str, reg: str) -> dict[str, str]:
    """conv8 ... (extra block ``b``, conv ``i`` in 0, 1 named ``extra(b, i)``) and the per-level head convs."""
    table = {}
    for block in range(num_levels - 2):  # levels 0 and 1 are conv4_3 and fc7
        n = block + 8
        table[f"backbone.extras.conv{n}.conv{n}_1"] = extra(block, 0)
        table[f"backbone.extras.conv{n}.conv{n}_2"] = extra(block, 1)
    for level in range(num_levels):
        table[f"head.classification.{level}"] = f"{cls}.{level}"
        table[f"head.regression.{level}"] = f"{reg}.{level}"
    return table


def _torchvision_table(num_levels: int = 6) -> dict[str, str]:
    """ssd_zoo key -> torchvision ``ssd300_vgg16`` key (its VGG layers are indexed, as in torchvision's vgg16)."""
    table = {_ssd_zoo_vgg_name(n): f"backbone.features.{i}" for n, i in zip(_VGG_CONVS[:10], _VGG_INDICES)}
    # extra.0 = pool4, conv5_1..relu5_3 (indices 1, 3, 5), then fc = (pool5, fc6, relu, fc7, relu) at index 7.
    table.update({"backbone.fc.conv5_1": "backbone.extra.0.1", "backbone.fc.conv5_2": "backbone.extra.0.3",
                  "backbone.fc.conv5_3": "backbone.extra.0.5", "backbone.fc.fc6": "backbone.extra.0.7.1",
                  "backbone.fc.fc7": "backbone.extra.0.7.3"})
    # torchvision's extra.k (k >= 1) is (conv, ReLU, conv, ReLU): its convs sit at 0 and 2.
    table.update(_extras_and_head(num_levels, lambda b, i: f"backbone.extra.{b + 1}.{2 * i}",
                                  "head.classification_head.module_list", "head.regression_head.module_list"))
    return {**_conv_keys(table), "backbone.l2norm.weight": "backbone.scale_weight"}


def _ssd_pytorch_table(num_levels: int = 6) -> dict[str, str]:
    """ssd_zoo key -> ssd.pytorch key: ``vgg.N`` (N as in its ``vgg`` list), ``extras.N``, ``loc.N``, ``conf.N``."""
    table = {_ssd_zoo_vgg_name(n): f"vgg.{i}" for n, i in zip(_VGG_CONVS, _VGG_INDICES)}
    table.update({"backbone.fc.fc6": f"vgg.{_FC6_INDEX}", "backbone.fc.fc7": f"vgg.{_FC7_INDEX}"})
    # ssd.pytorch's extras is one flat list of convs (1x1, 3x3, 1x1, 3x3, ...); its forward applies the ReLUs.
    table.update(_extras_and_head(num_levels, lambda b, i: f"extras.{2 * b + i}", "conf", "loc"))
    return {**_conv_keys(table), "backbone.l2norm.weight": "L2Norm.weight"}


def _rename(state_dict: Mapping[str, Tensor], expected: dict[str, str], source: str) -> dict[str, Tensor]:
    """Rename keys (``expected``: source key -> target key); report every key that fits nowhere."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise KeyError(f"{source} state dict does not fit the layout: missing keys {missing}, unexpected keys {unexpected}")
    return {expected[key]: value for key, value in state_dict.items()}


def rename(state_dict: Mapping[str, Tensor], expected: dict[str, str], source: str) -> dict[str, Tensor]:
    """Rename keys with a table (source key -> target key); KeyError listing every missing and unexpected key
    (``source`` names the side being read). What a publisher's converters are made of."""
    return _rename(state_dict, expected, source)


def num_levels(state_dict: Mapping[str, Tensor], pattern: str = "head.regression.{}.weight") -> int:
    """How many head levels a state dict has: the count of keys ``pattern.format(level)`` present."""
    level = 0
    while pattern.format(level) in state_dict:
        level += 1
    return level


def first_conv(state_dict: Mapping[str, Tensor]) -> str | None:
    """The key of the convolution that reads the image: VGG16's conv1_1, else the first ``[out, 3, kh, kw]``
    weight in the state dict's order (every backbone's stem comes first)."""
    if _FIRST_CONV in state_dict:
        return _FIRST_CONV
    return next((k for k, v in state_dict.items() if k.endswith("weight") and v.ndim == 4 and v.shape[1] == 3), None)


def _permute_first_conv(state_dict: dict[str, Tensor], input_order: InputOrder) -> dict[str, Tensor]:
    """For BGR-trained weights, swap the first conv's input channels (B, G, R) -> (R, G, B), and back."""
    if input_order not in ("rgb", "bgr"):
        raise ValueError(f"input_order: expected 'rgb' or 'bgr', found {input_order!r}")
    if input_order == "bgr":
        key = first_conv(state_dict)
        if key is None:
            raise ValueError("input_order='bgr': no convolution with 3 input channels in the state dict")
        state_dict[key] = state_dict[key].flip(1)  # [out, 3, kh, kw]: dim 1 is the input channel
    return state_dict


def from_torchvision(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ``ssd300_vgg16`` state dict -> ssd_zoo ``ssd300_vgg16`` state dict (same tensors)."""
    inverse = {v: k for k, v in _torchvision_table().items()}
    return _rename(state_dict, inverse, "torchvision")


# torchvision's ssd300_vgg16 lays out its own default boxes, ssd_zoo's anchors="coco" preset at 300.
TORCHVISION_ANCHORS = "coco"


def _torchvision_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return _rename(split_record(state_dict)[0], _torchvision_table(), "ssd_zoo")


def to_torchvision(state_dict: Mapping[str, Tensor], anchors: str | None = None,
                   where: str = "state dict") -> dict[str, Tensor]:
    """ssd_zoo ``ssd300_vgg16`` state dict -> one that torchvision's ``ssd300_vgg16`` loads with ``strict=True``
    (ssd_zoo's model record is left out: torchvision has no place for it). A model whose default boxes are not
    torchvision's, or not known (no record and no ``anchors``: "voc" or "coco"), raises ValueError (the layout's
    check, :func:`ssd_zoo.weights.publishers.tv.check_torchvision_boxes`), as ``ssd-zoo convert --to torchvision``."""
    return from_ssd_zoo(state_dict, "torchvision", anchors=anchors, where=where)


def from_ssd_pytorch(state_dict: Mapping[str, Tensor], input_order: InputOrder = "rgb") -> dict[str, Tensor]:
    """ssd.pytorch state dict (SSD300: 6 levels, or 7 for an SSD512 built the same way) -> ssd_zoo's.

    Args:
        state_dict: keys ``vgg.N.*``, ``L2Norm.weight``, ``extras.N.*``, ``loc.N.*``, ``conf.N.*``.
        input_order: the channel order the network was trained on. ssd.pytorch's own weights are RGB (it
            flips OpenCV's BGR after mean subtraction); ``"bgr"`` permutes conv1_1's input channels so that
            the converted model takes RGB, like every ssd_zoo model.
    """
    inverse = {v: k for k, v in _ssd_pytorch_table(num_levels(state_dict, "loc.{}.weight")).items()}
    return _permute_first_conv(_rename(state_dict, inverse, "ssd.pytorch"), input_order)


def to_ssd_pytorch(state_dict: Mapping[str, Tensor], input_order: InputOrder = "rgb") -> dict[str, Tensor]:
    """ssd_zoo state dict -> ssd.pytorch's layout; ``input_order="bgr"`` for a network fed BGR images (ssd_zoo's
    model record is left out)."""
    state = _permute_first_conv(split_record(state_dict)[0], input_order)
    return _rename(state, _ssd_pytorch_table(num_levels(state, "head.regression.{}.weight")), "ssd_zoo")


def head_classes(state_dict: Mapping[str, Tensor]) -> int | None:
    """Classes with background of an ssd_zoo-layout state dict, from level 0's output convs ``[k*C, ...]`` and
    ``[k*4, ...]`` (the last 4-D weight under ``head.classification.0`` / ``head.regression.0``: the conv itself,
    or an SSDLite predictor's pointwise conv); None where they are not there."""
    def output_channels(prefix: str) -> int | None:
        convs = [v for k, v in state_dict.items() if k.startswith(prefix) and k.endswith("weight") and v.ndim == 4]
        return convs[-1].shape[0] if convs else None

    cls, reg = output_channels("head.classification.0."), output_channels("head.regression.0.")
    return None if cls is None or reg is None else cls // (reg // 4)


@dataclass(frozen=True)
class Layout:
    """One project's state-dict layout, registered with :func:`register_layout` (a publisher module does it).

    Attributes:
        name: what users pass as ``layout=`` / ``ssd-zoo convert --from NAME``.
        matches: ``state_dict -> bool``, recognises the layout from its keys (and shapes); exactly one
            registered layout may match a file.
        to_ssd_zoo: the layout's state dict -> ssd_zoo's keys (tensors unchanged, or permuted as data says).
        from_ssd_zoo: the inverse (ssd_zoo's record left out), or None where there is none.
        anchors: the default-box preset the layout implies ("voc", "coco"), or None: an ssd_zoo file records its
            own, a publisher with its own boxes builds them in its registered model (its ``DefaultBoxSpec``).
        model: ``state_dict (this layout) -> (registered model name, builder keywords)`` that fits it, from its
            keys and shapes (what :func:`ssd_zoo.load` builds); ValueError where it cannot tell; None: no model.
        description: one line for error messages and ``ssd-zoo convert --help``.
        check: ``(state_dict in ssd_zoo's layout, anchors, where) -> None``: raises ValueError for a model the
            layout's own code would decode wrongly (e.g. against other default boxes), before
            :func:`from_ssd_zoo` writes it; None: any model that fits the keys.
        entries: checkpoint entries (besides ``"model"`` and ``"state_dict"``) that hold the state dict.
        label_spaces: class count (with background) -> the label space a file of this layout with that many
            classes is in, where its publisher's code fixes one (a key of
            :data:`ssd_zoo.weights.published.LABEL_SPACES`, e.g. ``{21: "VOC"}``): what a file that records no
            class names is taken to name.
    """

    name: str
    matches: Callable[[Mapping[str, Tensor]], bool]
    to_ssd_zoo: Callable[[Mapping[str, Tensor]], dict[str, Tensor]]
    from_ssd_zoo: Callable[[Mapping[str, Tensor]], dict[str, Tensor]] | None = None
    anchors: str | None = None
    model: Callable[[Mapping[str, Tensor]], tuple[str, dict]] | None = None
    description: str = ""
    entries: tuple[str, ...] = ()
    label_spaces: Mapping[int, str] = field(default_factory=dict)
    check: Callable[[Mapping[str, Tensor], str | None, str], None] | None = None


# Label spaces (names of ssd_zoo.weights.published.LABEL_SPACES): torchvision's COCO ids 0..90 with its "N/A"
# slots; ssd.pytorch's, lufficc's, qfgaohao's and NVIDIA's contiguous labels: VOC's 20 classes or COCO's 80 in
# category-id order (ssd.pytorch data/voc0712.py VOC_CLASSES and data/coco.py COCO_CLASSES).
VOC, COCO_91, COCO_80 = "VOC", "COCO (91 ids)", "COCO (80 classes)"
VOC_OR_COCO_80 = {21: VOC, 81: COCO_80}

_LAYOUTS: dict[str, Layout] = {}
LAYOUTS: list[str] = []  # registered layout names, in registration order (kept current by register_layout)
# What a layout implies about default boxes (kept current by register_layout): torchvision's SSD300 uses its
# own (= "coco") scales, ssd.pytorch the paper's VOC ones; an ssd_zoo file does not say (it records its own).
LAYOUT_ANCHORS: dict[str, str | None] = {}


def register_layout(layout: Layout) -> Layout:
    """Add ``layout`` to the registry that detection and conversion dispatch through; a name taken raises."""
    if layout.name in _LAYOUTS:
        raise ValueError(f"register_layout: a layout named {layout.name!r} is already registered")
    _LAYOUTS[layout.name] = layout
    LAYOUTS.append(layout.name)
    LAYOUT_ANCHORS[layout.name] = layout.anchors
    return layout


def set_check(name: str, check: Callable[[Mapping[str, Tensor], str | None, str], None]) -> None:
    """Give the registered layout ``name`` its :attr:`Layout.check` (a publisher module that knows the default
    boxes the layout's code decodes with does it, e.g. torchvision's)."""
    _LAYOUTS[name] = dataclasses.replace(get_layout(name), check=check)


def get_layout(name: str) -> Layout:
    """The registered layout ``name``; ValueError naming the known ones."""
    if name not in _LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; expected one of {LAYOUTS}")
    return _LAYOUTS[name]


def unwrap(checkpoint: Mapping[str, object]) -> dict[str, Tensor]:
    """The state dict inside a checkpoint: a ``"model"`` or ``"state_dict"`` entry (or one a layout names,
    see :attr:`Layout.entries`) if there is one, with DataParallel's ``module.`` prefix removed."""
    entries = ["model", "state_dict"] + [e for layout in _LAYOUTS.values() for e in layout.entries]
    for entry in entries:
        if isinstance(checkpoint.get(entry), Mapping):
            checkpoint = checkpoint[entry]
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def detect_layout(state_dict: Mapping[str, Tensor], where: str = "state dict") -> str:
    """Which registered layout ``state_dict`` is in (the one whose ``matches`` holds); ValueError otherwise,
    naming the known layouts and the first keys."""
    found = [layout.name for layout in _LAYOUTS.values() if layout.matches(state_dict)]
    if len(found) != 1:
        known = {name: layout.description for name, layout in _LAYOUTS.items()}
        sample = list(state_dict)[:5]
        raise ValueError(
            f"{where}: expected exactly one of the known SSD layouts {known}, found "
            f"{found or 'none'} matching; first keys: {sample}"
        )
    return found[0]


def to_ssd_zoo(state_dict: Mapping[str, Tensor], layout: str | None = None, input_order: InputOrder = "rgb",
               where: str = "state dict") -> dict[str, Tensor]:
    """Any registered layout (detected when ``layout`` is None) -> ssd_zoo's layout; ``input_order="bgr"`` flips
    the first conv's input channels so that the result takes RGB, like every ssd_zoo model."""
    chosen = get_layout(layout or detect_layout(state_dict, where))
    return _permute_first_conv(chosen.to_ssd_zoo(state_dict), input_order)


def from_ssd_zoo(state_dict: Mapping[str, Tensor], layout: str, input_order: InputOrder = "rgb",
                 anchors: str | None = None, where: str = "state dict") -> dict[str, Tensor]:
    """ssd_zoo's layout -> ``layout`` (one of :data:`LAYOUTS` with a ``from_ssd_zoo``); ``input_order="bgr"`` for a
    network fed BGR images. A model the layout's code would decode wrongly raises ValueError (its
    :attr:`Layout.check`; ``anchors``: the default boxes of a state dict without ssd_zoo's record)."""
    chosen = get_layout(layout)
    if chosen.from_ssd_zoo is None:
        raise ValueError(f"layout {layout!r} can be read but not written (no from_ssd_zoo)")
    if chosen.check is not None:
        chosen.check(state_dict, anchors, where)
    return chosen.from_ssd_zoo(_permute_first_conv(dict(state_dict), input_order))


def fitting_model(state_dict: Mapping[str, Tensor], layout: str, where: str = "state dict") -> tuple[str, dict]:
    """``(registered model name, builder keywords)`` that ``state_dict`` (in ``layout``) fits."""
    chosen = get_layout(layout)
    if chosen.model is None:
        raise ValueError(f"{where}: layout {layout!r} names no registered model; build one and load the file into it")
    return chosen.model(state_dict)


def _has_prefix(prefix: str) -> Callable[[Mapping[str, Tensor]], bool]:
    return lambda state_dict: any(key.startswith(prefix) for key in state_dict)


def _vgg16_model(levels: int, where: str) -> tuple[str, dict]:
    """The VGG16 SSD with ``levels`` head levels: 6 -> ssd300_vgg16, 7 -> ssd512_vgg16 (classes and default
    boxes come from the checkpoint: its head's shapes, its record or its layout's anchors)."""
    names = {6: "ssd300_vgg16", 7: "ssd512_vgg16"}
    if levels not in names:
        raise ValueError(f"{where}: expected the 6 (SSD300) or 7 (SSD512) head levels of a VGG16 SSD, found {levels}")
    return names[levels], {}


def _ssd_zoo_model(state_dict: Mapping[str, Tensor]) -> tuple[str, dict]:
    """The builder an ssd_zoo file records; else, for a VGG16 SSD (recognised by its keys), ssd300/512_vgg16."""
    record = split_record(state_dict)[1]
    if record is not None and record.get("builder") is not None:
        return record["builder"]["name"], dict(record["builder"]["kwargs"])
    if _FIRST_CONV in state_dict:
        return _vgg16_model(num_levels(state_dict), "ssd_zoo state dict")
    raise ValueError("ssd_zoo state dict: it does not record which model it is (saved before ssd_zoo 0.2, or not by "
                     "ssd_zoo.build); build the model by name (ssd_zoo.build(NAME, weights=FILE), --model NAME)")


register_layout(Layout(
    "ssd_zoo", _has_prefix("head.classification."), dict, dict, None, _ssd_zoo_model,
    "this project: head.classification.N"))
register_layout(Layout(
    "torchvision", _has_prefix("backbone.scale_weight"), from_torchvision, _torchvision_keys, TORCHVISION_ANCHORS,
    lambda sd: _vgg16_model(num_levels(sd, "head.regression_head.module_list.{}.weight"), "torchvision"),
    "torchvision ssd300_vgg16: backbone.scale_weight", label_spaces={91: COCO_91}))
register_layout(Layout(
    "ssd.pytorch", _has_prefix("L2Norm.weight"), from_ssd_pytorch, to_ssd_pytorch, "voc",
    lambda sd: _vgg16_model(num_levels(sd, "loc.{}.weight"), "ssd.pytorch"),
    "amdegroot/ssd.pytorch: L2Norm.weight", label_spaces=VOC_OR_COCO_80))


def vgg16_backbone_from(state_dict: Mapping[str, Tensor], where: str = "state dict",
                        input_order: InputOrder = "rgb") -> dict[str, Tensor]:
    """An ImageNet VGG16 file -> ``VGG16Backbone`` keys (``features.conv1_1.weight``, ``fc.fc6.weight``, ...).

    Layouts: torchvision's ``vgg16()`` (``features.N.*``: conv1_1 ... conv5_3; ``classifier.*`` is dropped,
    the SSD has its own fc6/fc7) or ssd.pytorch's ``vgg16_reducedfc.pth`` (``N.*`` or ``vgg.N.*``: conv1_1 ...
    conv5_3 and the reduced fc6 (31) and fc7 (33)).
    """
    if any(key.startswith("features.") for key in state_dict):
        table = {_ssd_zoo_vgg_name(n): f"features.{i}" for n, i in zip(_VGG_CONVS, _VGG_INDICES)}
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
        source = f"{where} (torchvision vgg16 layout)"
    else:
        table = {_ssd_zoo_vgg_name(n): str(i) for n, i in zip(_VGG_CONVS, _VGG_INDICES)}
        table.update({"backbone.fc.fc6": str(_FC6_INDEX), "backbone.fc.fc7": str(_FC7_INDEX)})
        state_dict = {k.removeprefix("vgg."): v for k, v in state_dict.items()}
        source = f"{where} (ssd.pytorch vgg16_reducedfc layout)"
    inverse = {v: k for k, v in _conv_keys(table).items()}
    state = _permute_first_conv(_rename(state_dict, inverse, source), input_order)
    return {k.removeprefix("backbone."): v for k, v in state.items()}

