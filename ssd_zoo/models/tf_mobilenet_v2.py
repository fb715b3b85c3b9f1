"""The TF Object Detection API's SSDLite on MobileNetV2 (``ssdlite_mobilenet_v2_coco`` of the TF1 detection zoo) as
an :class:`~ssd_zoo.models.tf_graph.Architecture`, without a graph: what its frozen graphs hold, in their names.

From ``research/object_detection/models/ssd_mobilenet_v2_feature_extractor.py`` (``use_depthwise``, depth multiplier
1, ``min_depth`` 16), slim's ``mobilenet_v2.V2_DEF`` and ``feature_map_generators.multi_resolution_feature_maps``:
- ``Conv`` (3x3/2, 32), ``expanded_conv`` (depthwise 3x3, project to 16), ``expanded_conv_1`` ... ``_16``: inverted
  residuals (expand 1x1 x6, depthwise 3x3, project 1x1; ``add`` where stride 1 keeps the channels), ``Conv_1``
  (1x1, 1280); batch norm (epsilon 0.001) and ReLU6 after every conv but the projections;
- feature maps: ``expanded_conv_13``'s expansion (576 channels, stride 16) and ``Conv_1`` (1280, stride 32), then
  four extra layers ``layer_19_1_Conv2d_<i>_1x1_<d/2>`` + ``layer_19_2_Conv2d_<i>_3x3_s2_<d>`` (depthwise 3x3/2 and
  1x1) of depths 512, 256, 256, 128;
- box predictors ``BoxPredictor_<k>``: for classes and boxes each, a depthwise 3x3 unit (``..._depthwise``, batch
  norm, ReLU6) and a 1x1 convolution with bias (``ClassPredictor``: ``k * C``, ``BoxEncodingPredictor``: ``k * 4``).
"""
from __future__ import annotations

import numpy as np

from ssd_zoo.models.tf_graph import INPUT, Architecture, Step
from ssd_zoo.models.tf_layers import ConvSpec

EPS = float(np.float32(0.001))  # as a graph's FusedBatchNorm holds it (a float32 attribute)
# slim mobilenet_v2.V2_DEF after Conv and expanded_conv: (expansion, channels, repeats, first stride).
BLOCKS = ((6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
EXTRA_DEPTHS = (512, 256, 256, 128)
FIRST_MAP = "expanded_conv_13.expand"  # 'layer_15/expansion_output'


def _unit(name: str, source: str, in_ch: int, out_ch: int, kernel: int, stride: int = 1, *, depthwise: bool = False,
          act: str | None = "relu6") -> Step:
    return Step("conv", name, (source,), ConvSpec(in_ch, out_ch, kernel, stride, depthwise=depthwise, norm_eps=EPS,
                                                  activation=act))


def mobilenet_v2_steps() -> tuple[list[Step], str]:
    """The feature extractor's program up to ``Conv_1`` and the name of its last value."""
    steps = [_unit("Conv", INPUT, 3, 32, 3, 2), _unit("expanded_conv.depthwise", "Conv", 32, 32, 3, depthwise=True),
             _unit("expanded_conv.project", "expanded_conv.depthwise", 32, 16, 1, act=None)]
    value, channels, index = "expanded_conv.project", 16, 1
    for expansion, out_ch, repeats, first_stride in BLOCKS:
        for repeat in range(repeats):
            stride, block, mid = first_stride if repeat == 0 else 1, f"expanded_conv_{index}", channels * expansion
            steps += [_unit(f"{block}.expand", value, channels, mid, 1),
                      _unit(f"{block}.depthwise", f"{block}.expand", mid, mid, 3, stride, depthwise=True),
                      _unit(f"{block}.project", f"{block}.depthwise", mid, out_ch, 1, act=None)]
            output = f"{block}.project"
            if stride == 1 and channels == out_ch:
                steps.append(Step("add", f"{block}.add", (output, value)))
                output = f"{block}.add"
            value, channels, index = output, out_ch, index + 1
    steps.append(_unit("Conv_1", value, channels, 1280, 1))
    return steps, "Conv_1"


def _predictor(level: int, kind: str, in_ch: int, out_ch: int) -> tuple[tuple[str, ConvSpec], ...]:
    return ((f"{kind}_depthwise", ConvSpec(in_ch, in_ch, 3, depthwise=True, norm_eps=EPS, activation="relu6")),
            (kind, ConvSpec(in_ch, out_ch, 1, bias=True)))


def ssdlite_mobilenet_v2(num_classes: int, boxes_per_location: tuple[int, ...] = (3, 6, 6, 6, 6, 6)) -> Architecture:
    """The architecture of ``ssdlite_mobilenet_v2_coco`` for ``num_classes`` (background included, as the API's
    ``num_classes + 1``) and the anchors' boxes per location on the six maps."""
    steps, value = mobilenet_v2_steps()
    features, channels = [FIRST_MAP, value], [576, 1280]
    for i, depth in enumerate(EXTRA_DEPTHS, start=2):
        reduce, down = f"layer_19_1_Conv2d_{i}_1x1_{depth // 2}", f"layer_19_2_Conv2d_{i}_3x3_s2_{depth}"
        steps += [_unit(reduce, value, channels[-1], depth // 2, 1),
                  _unit(f"{down}_depthwise", reduce, depth // 2, depth // 2, 3, 2, depthwise=True),
                  _unit(down, f"{down}_depthwise", depth // 2, depth, 1)]
        features.append(down)
        channels.append(depth)
        value = down
    return Architecture(
        tuple(steps), tuple(features),
        tuple(_predictor(k, "ClassPredictor", c, n * num_classes) for k, (c, n) in enumerate(zip(channels, boxes_per_location))),
        tuple(_predictor(k, "BoxEncodingPredictor", c, n * 4) for k, (c, n) in enumerate(zip(channels, boxes_per_location))))
