"""Default boxes (the paper's "prior boxes", torchvision's "anchors").

Each feature map of size ``H x W`` tiles the image with ``H * W`` locations; every location carries
``2 + 2 * len(aspect_ratios)`` boxes: a square of side ``s_k``, a square of side ``sqrt(s_k * s_k+1)``,
and for every ratio ``r`` a box ``s_k*sqrt(r) x s_k/sqrt(r)`` and its transpose (SSD paper, sec. 2.2).
Sizes here are in pixels of the network input; the presets give the published ones.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class DefaultBoxSpec:
    """Default boxes of an SSD, per feature level, in pixels of the ``input_size`` network input.

    ``sizes`` has one more entry than there are levels: level ``k`` uses ``sizes[k]`` and
    ``sizes[k + 1]`` (the paper's ``s_k`` and ``s_k+1``, i.e. Caffe's min_size and max_size).
    ``clip`` says what is clipped to [0, 1] in relative ``(cx, cy, w, h)``: ``"size"`` the widths and
    heights (torchvision), ``"all"`` centres too (ssd.pytorch: the last column of a 10x10 map with step 32
    would be centred at 304 px of 300), ``"none"`` nothing (Caffe SSD's ``clip: false``).
    ``grid`` gives the side of each level's square map where it is not ``ceil(input_size / step)`` (the first
    file of lufficc's MobileNetV2 SSD320 kept the steps 100/150/300 of a 300 input on its 3/2/1 maps); ``None``: derived.
    ``shapes`` gives, per level, each box's ``(width, height)`` relative to the input, in the order of the head's
    channels, where a publisher lays its boxes out otherwise than the paper (the TF Object Detection API's
    ``MultipleGridAnchorGenerator``: ``(scale, ratio)`` pairs in its own order, a 0.1 box on the first level);
    ``sizes`` and ``aspect_ratios`` then only describe them (the publisher's scales and ratios). ``None``: the
    paper's boxes from ``sizes`` and ``aspect_ratios``.
    """

    input_size: int
    sizes: tuple[float, ...]
    aspect_ratios: tuple[tuple[int, ...], ...]
    steps: tuple[float, ...]  # pixels between centres; fractional where a side doesn't divide (SSDLite: 320 / 3)
    clip: str = "size"
    grid: tuple[int, ...] | None = None
    shapes: tuple[tuple[tuple[float, float], ...], ...] | None = None

    def __post_init__(self) -> None:
        levels = len(self.aspect_ratios)
        if len(self.sizes) != levels + 1 or len(self.steps) != levels:
            raise ValueError(
                f"DefaultBoxSpec: expected {levels + 1} sizes and {levels} steps for {levels} levels, "
                f"found {len(self.sizes)} sizes and {len(self.steps)} steps"
            )
        if self.grid is not None and len(self.grid) != levels:
            raise ValueError(f"DefaultBoxSpec.grid: expected {levels} map sides, found {list(self.grid)}")
        if self.clip not in ("size", "all", "none"):
            raise ValueError(f"DefaultBoxSpec.clip: expected 'size', 'all' or 'none', found {self.clip!r}")
        if self.shapes is not None and (len(self.shapes) != levels or not all(
                level and all(len(wh) == 2 for wh in level) for level in self.shapes)):
            raise ValueError(f"DefaultBoxSpec.shapes: expected {levels} levels of (width, height) pairs, found "
                             f"{self.shapes}")

    @property
    def boxes_per_location(self) -> list[int]:
        if self.shapes is not None:
            return [len(level) for level in self.shapes]
        return [2 + 2 * len(ratios) for ratios in self.aspect_ratios]

    def to_dict(self) -> dict[str, object]:
        """Plain numbers and lists (what a ``weights_only`` checkpoint can hold); :meth:`from_dict` reads it."""
        return {"input_size": self.input_size, "sizes": [float(s) for s in self.sizes],
                "aspect_ratios": [[float(r) for r in level] for level in self.aspect_ratios],
                "steps": [float(s) for s in self.steps], "clip": self.clip,
                **({} if self.grid is None else {"grid": [int(side) for side in self.grid]}),
                **({} if self.shapes is None else {"shapes": [[[float(w), float(h)] for w, h in level]
                                                              for level in self.shapes]})}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> DefaultBoxSpec:
        grid, shapes = values.get("grid"), values.get("shapes")
        return cls(int(values["input_size"]), tuple(float(s) for s in values["sizes"]),
                   tuple(tuple(float(r) for r in level) for level in values["aspect_ratios"]),
                   tuple(float(s) for s in values["steps"]), str(values["clip"]),
                   None if grid is None else tuple(int(side) for side in grid),
                   None if shapes is None else tuple(tuple((float(w), float(h)) for w, h in level) for level in shapes))

    def describe(self) -> str:
        """A short text for error messages: input, sizes, ratios, clip."""
        sizes = "/".join(f"{s:g}" for s in self.sizes)
        ratios = ",".join("+".join(f"{r:g}" for r in level) for level in self.aspect_ratios)
        boxes = "" if self.shapes is None else f", {'/'.join(map(str, self.boxes_per_location))} boxes per location as given"
        return f"input {self.input_size}, sizes {sizes} px, ratios {ratios}, clip={self.clip!r}{boxes}"


_RATIOS_300 = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
_RATIOS_512 = ((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,))

# (input size, preset) -> spec. "voc": the SSD paper's VOC sizes, clipped as ssd.pytorch (whose VOC weights
# ssd_zoo loads); "coco": torchvision's scales 0.07..1.05, clipped as torchvision (whose COCO weights it loads).
PRESETS: dict[tuple[int, str], DefaultBoxSpec] = {
    (300, "voc"): DefaultBoxSpec(
        300, (30, 60, 111, 162, 213, 264, 315), _RATIOS_300, (8, 16, 32, 64, 100, 300), clip="all"
    ),
    (300, "coco"): DefaultBoxSpec(300, (21, 45, 99, 153, 207, 261, 315), _RATIOS_300, (8, 16, 32, 64, 100, 300)),
    (512, "voc"): DefaultBoxSpec(
        512, (35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6), _RATIOS_512, (8, 16, 32, 64, 128, 256, 512),
        clip="all",
    ),
    (512, "coco"): DefaultBoxSpec(
        512, (20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72), _RATIOS_512, (8, 16, 32, 64, 128, 256, 512)
    ),
}


def preset(input_size: int, anchors: str) -> DefaultBoxSpec:
    """The published default boxes for ``input_size`` (300 or 512) and ``anchors`` ("voc" or "coco").

    Other input sizes (e.g. 320) scale the 300 preset's sizes and steps proportionally. (SSDLite has its own
    default boxes: :func:`ssd_zoo.models.ssdlite.ssdlite_spec`.)
    """
    if anchors not in ("voc", "coco"):
        raise ValueError(f"anchors: expected 'voc' or 'coco', found {anchors!r}")
    if (input_size, anchors) in PRESETS:
        return PRESETS[(input_size, anchors)]
    base = PRESETS[(300, anchors)]
    factor = input_size / 300
    return DefaultBoxSpec(
        input_size,
        tuple(s * factor for s in base.sizes),
        base.aspect_ratios,
        tuple(round(s * factor) for s in base.steps[:-1]) + (input_size,),
        clip=base.clip,
    )


def spec_from_min_max(
    input_size: int,
    min_sizes: Sequence[float],
    max_sizes: Sequence[float],
    aspect_ratios: Sequence[Sequence[float]],
    steps: Sequence[float],
    clip: str = "all",
) -> DefaultBoxSpec:
    """A spec from the Caffe-style per-level ``min_size`` / ``max_size`` lists that SSD ports configure (lufficc's
    ``MODEL.PRIORS``, qfgaohao's ``SSDSpec(feature_map_size, shrinkage, SSDBoxSizes(min, max), ratios)``).

    A :class:`DefaultBoxSpec` chains the levels (level ``k``'s max is level ``k+1``'s min); lists that do not
    chain raise ValueError naming the level.
    """
    if not len(min_sizes) == len(max_sizes) == len(aspect_ratios) == len(steps):
        raise ValueError(f"spec_from_min_max: expected one min size, max size, ratio list and step per level, found "
                         f"{len(min_sizes)}, {len(max_sizes)}, {len(aspect_ratios)} and {len(steps)}")
    for k in range(len(min_sizes) - 1):
        if max_sizes[k] != min_sizes[k + 1]:
            raise ValueError(f"spec_from_min_max: level {k}'s max size {max_sizes[k]} is not level {k + 1}'s min size "
                             f"{min_sizes[k + 1]} (a DefaultBoxSpec chains them)")
    return DefaultBoxSpec(input_size, tuple(float(s) for s in min_sizes) + (float(max_sizes[-1]),),
                          tuple(tuple(level) for level in aspect_ratios), tuple(float(s) for s in steps), clip=clip)


def feature_grid(input_size: int, strides: Sequence[int]) -> list[int]:
    """Sides of an SSD's square maps: ``ceil(input_size / s)`` per backbone stride, then halving (ceil) to 1.

    ``feature_grid(128, (8, 16, 32))`` is ``[16, 8, 4, 2, 1]``; SSDLite's ``feature_grid(320, (16,))`` is
    ``[20, 10, 5, 3, 2, 1]``. (The 300 and 512 presets keep the paper's own grids, see :data:`PRESETS`.)
    """
    grid = [math.ceil(input_size / stride) for stride in strides]
    while grid[-1] > 1:
        grid.append(math.ceil(grid[-1] / 2))
    return grid


def grid_sides(spec: DefaultBoxSpec) -> list[int]:
    """Per level, the side of the square map the default boxes were laid out for: ``spec.grid`` where the
    publisher gave it, else ``ceil(input_size / step)``."""
    if spec.grid is not None:
        return list(spec.grid)
    # round() first: SSDLite's steps are fractions like 320/3, and 320 / (320/3) is 3.0000000000000004.
    return [math.ceil(round(spec.input_size / step, 6)) for step in spec.steps]


def num_default_boxes(spec: DefaultBoxSpec) -> int:
    """How many default boxes ``spec`` lays out on its square maps (:func:`grid_sides`): 8732 for SSD300."""
    return sum(side * side * k for side, k in zip(grid_sides(spec), spec.boxes_per_location))


def default_box_spec(
    input_size: int,
    anchors: str = "voc",
    box_sizes: Sequence[float] | None = None,
    aspect_ratios: Sequence[Sequence[float]] | None = None,
) -> DefaultBoxSpec:
    """The default boxes of an SSD at any ``input_size``, with the data's own sizes and ratios if given.

    300 and 512 are the published presets (:func:`preset`). Up to 256 (e.g. the demo's 128) the maps are at
    strides 8/16/32, then halving down to 1 (:func:`feature_grid`; a 192 input gets maps 24/12/6/3/2/1),
    each level's step ``input_size / side`` so that the centres tile the image; with 6 levels the 300
    preset's sizes scaled by ``input_size / 300`` and its ratios, with fewer the sizes spaced evenly between
    the preset's smallest and largest. Other sizes scale the 300 preset (:func:`preset`).

    ``box_sizes`` (pixels of the input, one more than there are levels) and ``aspect_ratios`` (one tuple
    per level) replace the preset's when given, for data whose objects span another range of sizes.
    """
    base = preset(300, anchors)
    if input_size in (300, 512) or input_size > 256:
        spec = preset(input_size, anchors)
        grid = grid_sides(spec)
    else:
        grid = feature_grid(input_size, (8, 16, 32))
        levels, scale = len(grid), input_size / 300
        if levels == len(base.aspect_ratios):
            sizes, ratios = tuple(s * scale for s in base.sizes), base.aspect_ratios
        else:
            low, high = base.sizes[0] * scale, base.sizes[-1] * scale
            sizes = tuple(low + (high - low) * k / levels for k in range(levels + 1))
            ratios = base.aspect_ratios[: levels - 1] + base.aspect_ratios[-1:]
        spec = DefaultBoxSpec(input_size, sizes, ratios, tuple(input_size / side for side in grid), clip=base.clip)
    levels = len(grid)
    wrong_sizes = box_sizes is not None and len(box_sizes) != levels + 1
    if wrong_sizes or (aspect_ratios is not None and len(aspect_ratios) != levels):
        raise ValueError(f"input_size={input_size}: maps {grid} are {levels} levels, so expected {levels + 1} box_sizes and "
                         f"{levels} aspect_ratios, found {box_sizes} and {aspect_ratios}")
    sizes = tuple(float(s) for s in box_sizes) if box_sizes is not None else spec.sizes
    ratios = tuple(tuple(float(r) for r in level) for level in aspect_ratios) if aspect_ratios is not None else spec.aspect_ratios
    return DefaultBoxSpec(input_size, sizes, ratios, spec.steps, clip=spec.clip)


def box_shapes(spec: DefaultBoxSpec) -> list[Tensor]:
    """Per level, the ``[boxes_per_location, 2]`` widths and heights, relative to the input size."""
    if spec.shapes is not None:
        return [torch.tensor(level, dtype=torch.float32) for level in spec.shapes]
    shapes = []
    for k, ratios in enumerate(spec.aspect_ratios):
        s_k = spec.sizes[k] / spec.input_size
        s_next = math.sqrt(spec.sizes[k] * spec.sizes[k + 1]) / spec.input_size
        wh = [[s_k, s_k], [s_next, s_next]]
        for r in ratios:
            w, h = s_k * math.sqrt(r), s_k / math.sqrt(r)
            wh.extend([[w, h], [h, w]])
        shapes.append(torch.tensor(wh, dtype=torch.float32))
    return shapes


def default_boxes(spec: DefaultBoxSpec, grid_sizes: list[tuple[int, int]], image_size: tuple[int, int]) -> Tensor:
    """All default boxes of an image, ``[A, 4]`` xyxy in pixels of the ``image_size = (H, W)`` input.

    Ordered level by level, then row, column, box shape — the order in which the head flattens its outputs.
    Centres sit at ``(j + 0.5) * step``; ``spec.clip`` says what is clipped (see :class:`DefaultBoxSpec`).
    """
    if len(grid_sizes) != len(spec.steps):
        raise ValueError(f"default_boxes: expected {len(spec.steps)} feature maps, found {len(grid_sizes)}")
    height, width = image_size
    boxes = []
    for (rows, cols), step, wh in zip(grid_sizes, spec.steps, box_shapes(spec)):
        # Centres relative to the image: the paper's (j + 0.5) / |f_k| with |f_k| = size / step.
        cy = (torch.arange(rows, dtype=torch.float32) + 0.5) / (height / step)
        cx = (torch.arange(cols, dtype=torch.float32) + 0.5) / (width / step)
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")
        centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, len(wh), 2)  # (HW, k, 2)
        if spec.clip == "all":
            centres = centres.clamp(0, 1)
        sizes = (wh if spec.clip == "none" else wh.clamp(0, 1)).expand_as(centres)
        boxes.append(torch.cat([centres, sizes], dim=-1).reshape(-1, 4))
    cxcywh = torch.cat(boxes)
    scale = torch.tensor([width, height], dtype=torch.float32)
    return torch.cat([(cxcywh[:, :2] - 0.5 * cxcywh[:, 2:]) * scale, (cxcywh[:, :2] + 0.5 * cxcywh[:, 2:]) * scale], 1)


class DefaultBoxGenerator(nn.Module):
    """Default boxes for a batch, computed once per (image size, grid sizes, device) and cached (float32).

    Under ``torch.compile`` they are computed in the graph instead (from shapes only, so the compiler can fold
    them): a cache that fills on the first call would change what dynamo guards on and recompile the model.
    """

    def __init__(self, spec: DefaultBoxSpec) -> None:
        super().__init__()
        self.spec = spec
        self._cache: dict[tuple, Tensor] = {}

    def forward(self, features: list[Tensor], image_size: tuple[int, int]) -> Tensor:
        """``features``: the backbone's maps ``[B, C_k, H_k, W_k]``; returns ``[A, 4]`` xyxy pixels."""
        grid_sizes = [tuple(f.shape[-2:]) for f in features]
        device = features[0].device
        if torch.compiler.is_compiling():
            return default_boxes(self.spec, grid_sizes, image_size).to(device)
        key = (tuple(image_size), tuple(grid_sizes), device)
        if key not in self._cache:
            self._cache[key] = default_boxes(self.spec, grid_sizes, image_size).to(device)
        return self._cache[key]
