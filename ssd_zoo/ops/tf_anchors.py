"""The TF Object Detection API's SSD anchors (``MultipleGridAnchorGenerator``, ``create_ssd_anchors``) as a
:class:`~ssd_zoo.ops.default_boxes.DefaultBoxSpec` with explicit ``shapes``.

The API describes a level's boxes as ``(scale, aspect ratio)`` pairs in its own order and computes, in float32,
``height = scale / sqrt(ratio) * base[0]`` and ``width = scale * sqrt(ratio) * base[1]``; centres sit at
``(j + 0.5) / side`` of each square grid and nothing is clipped. ``create_ssd_anchors`` makes the pairs: scales
spaced evenly from ``min_scale`` to ``max_scale`` over the levels; on every level one pair per aspect ratio plus,
with ``interpolated_scale_aspect_ratio``, the box of scale ``sqrt(s_k * s_k+1)`` (``s_k+1 = 1`` after the last);
``reduce_boxes_in_lowest_layer`` replaces the first level's by ``(0.1, 1), (s_0, 2), (s_0, 0.5)``. (Read from
``research/object_detection/anchor_generators/multiple_grid_anchor_generator.py`` and
``grid_anchor_generator.py`` of tensorflow/models.)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssd_zoo.ops.default_boxes import DefaultBoxSpec

# ssd_mobilenet_v1/v2 and ssdlite_mobilenet_v2 configs of the TF1 detection zoo (anchor_generator.ssd_anchor_generator).
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)


def anchor_spec(input_size: int, sides: Sequence[int], levels: Sequence[tuple[Sequence[float], Sequence[float]]],
                base: Sequence[float] = (1.0, 1.0)) -> DefaultBoxSpec:
    """The spec of per-level ``(scales, aspect ratios)`` (as the generator's float32 constants) on square grids of
    ``sides``; ``sizes`` and ``aspect_ratios`` describe them (each level's scale of its first non-square pair, in
    pixels, then the input size; the ratios as given)."""
    if len(sides) != len(levels):
        raise ValueError(f"anchor_spec: expected one grid side per level ({len(levels)}), found {list(sides)}")
    base32 = np.asarray(base, dtype=np.float32)
    shapes, sizes, ratios = [], [], []
    for scales, aspect in levels:
        scales32, aspect32 = np.asarray(scales, dtype=np.float32), np.asarray(aspect, dtype=np.float32)
        root = np.sqrt(aspect32)
        heights, widths = scales32 / root * base32[0], scales32 * root * base32[1]  # the generator's operations
        shapes.append(tuple((float(w), float(h)) for w, h in zip(widths, heights)))
        plain = [float(s) for s, r in zip(scales32, aspect32) if r != 1.0] or [float(scales32[0])]
        sizes.append(plain[0] * input_size)
        ratios.append(tuple(float(r) for r in aspect32))
    return DefaultBoxSpec(input_size, (*sizes, float(input_size)), tuple(ratios),
                          tuple(input_size / side for side in sides), clip="none", grid=tuple(sides),
                          shapes=tuple(shapes))


def ssd_anchor_levels(num_layers: int = 6, min_scale: float = 0.2, max_scale: float = 0.95,
                      aspect_ratios: Sequence[float] = ASPECT_RATIOS, interpolated_scale_aspect_ratio: float = 1.0,
                      reduce_boxes_in_lowest_layer: bool = True) -> list[tuple[list[float], list[float]]]:
    """``create_ssd_anchors``' per-level ``(scales, aspect ratios)`` (its defaults are the zoo configs')."""
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    levels = []
    for layer, (scale, scale_next) in enumerate(zip(scales[:-1], scales[1:])):
        if layer == 0 and reduce_boxes_in_lowest_layer:
            pairs = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            pairs = [(scale, ratio) for ratio in aspect_ratios]
            if interpolated_scale_aspect_ratio > 0.0:
                # In float32, as the zoo's graphs hold it (sqrt(0.65 * 0.8) rounds one float32 step lower so).
                interpolated = float(np.sqrt(np.float32(scale) * np.float32(scale_next)))
                pairs.append((interpolated, interpolated_scale_aspect_ratio))
        levels.append(([s for s, _ in pairs], [r for _, r in pairs]))
    return levels
