"""Plain-ops re-implementations of lufficc/SSD's MobileNetV2, MobileNetV3 and EfficientNet-B3 SSDs, for the tests.

Nothing here imports ssd_zoo. Each network is (1) its ``state_dict()`` key -> shape table, in lufficc's layout
(``SSDDetector``: ``backbone.*``, ``box_head.predictor.{cls,reg}_headers.N``), and (2) its forward pass walked the
way lufficc's modules walk it, over such a state dict. Read from lufficc/SSD: ``ssd/modeling/backbone/mobilenet.py``,
``mobilenetv3.py``, ``efficient_net/{efficient_net,utils}.py``, ``box_head/box_predictor.py``,
``layers/separable_conv.py`` and the three ``configs/*_voc0712.yaml``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from publisher_reference import MB2_EXTRAS, batch_norm, bn_shapes, conv, head, mb2_blocks
from torch import Tensor

Shapes = dict[str, tuple[int, ...]]


# ---- MobileNetV2 (mobilenet.py: ConvBNReLU = Sequential(conv, BN, ReLU6)) -------------------------------------
def mb2_residual_shapes(key: str, inp: int, oup: int, ratio: float) -> Shapes:
    hidden = int(round(inp * ratio))
    if ratio == 1:  # (ConvBNReLU dw, pw-linear conv, BN)
        return {f"{key}.conv.0.0.weight": (hidden, 1, 3, 3), **bn_shapes(f"{key}.conv.0.1", hidden),
                f"{key}.conv.1.weight": (oup, hidden, 1, 1), **bn_shapes(f"{key}.conv.2", oup)}
    return {f"{key}.conv.0.0.weight": (hidden, inp, 1, 1), **bn_shapes(f"{key}.conv.0.1", hidden),
            f"{key}.conv.1.0.weight": (hidden, 1, 3, 3), **bn_shapes(f"{key}.conv.1.1", hidden),
            f"{key}.conv.2.weight": (oup, hidden, 1, 1), **bn_shapes(f"{key}.conv.3", oup)}


def mb2_shapes() -> Shapes:
    shapes = {"backbone.features.0.0.weight": (32, 3, 3, 3), **bn_shapes("backbone.features.0.1", 32)}
    for k, (inp, oup, _, t) in enumerate(mb2_blocks(), start=1):
        shapes.update(mb2_residual_shapes(f"backbone.features.{k}", inp, oup, t))
    shapes.update({"backbone.features.18.0.weight": (1280, 320, 1, 1), **bn_shapes("backbone.features.18.1", 1280)})
    for b, (inp, oup, ratio) in enumerate(MB2_EXTRAS):
        shapes.update(mb2_residual_shapes(f"backbone.extras.{b}", inp, oup, ratio))
    return shapes


def mb2_residual(state: dict[str, Tensor], key: str, x: Tensor, stride: int, ratio: float) -> Tensor:
    y = x
    if ratio != 1:
        y = F.relu6(batch_norm(state, f"{key}.conv.0.1", conv(state, f"{key}.conv.0.0", y)))
    dw = "0" if ratio == 1 else "1"
    y = conv(state, f"{key}.conv.{dw}.0", y, stride=stride, padding=1, groups=y.shape[1])
    y = F.relu6(batch_norm(state, f"{key}.conv.{dw}.1", y))
    last = 1 if ratio == 1 else 2
    y = batch_norm(state, f"{key}.conv.{last + 1}", conv(state, f"{key}.conv.{last}", y))
    return x + y if stride == 1 and x.shape[1] == y.shape[1] else y


def mb2_forward(state: dict[str, Tensor], x: Tensor) -> list[Tensor]:
    """``MobileNetV2.forward``: features[:14], features[14:], then each extra."""
    x = conv(state, "backbone.features.0.0", x, stride=2, padding=1)
    x = F.relu6(batch_norm(state, "backbone.features.0.1", x))
    features = []
    for k, (_, _, stride, t) in enumerate(mb2_blocks(), start=1):
        if k == 14:
            features.append(x)
        x = mb2_residual(state, f"backbone.features.{k}", x, stride, t)
    x = F.relu6(batch_norm(state, "backbone.features.18.1", conv(state, "backbone.features.18.0", x)))
    features.append(x)
    for b, (_, _, ratio) in enumerate(MB2_EXTRAS):
        x = mb2_residual(state, f"backbone.extras.{b}", x, 2, ratio)
        features.append(x)
    return features


# ---- MobileNetV3 (mobilenetv3.py, d-li14's) ------------------------------------------------------------------
MB3_CFGS = [  # k, t, c, SE, HS, s
    (3, 1, 16, 0, 0, 1), (3, 4, 24, 0, 0, 2), (3, 3, 24, 0, 0, 1), (5, 3, 40, 1, 0, 2), (5, 3, 40, 1, 0, 1),
    (5, 3, 40, 1, 0, 1), (3, 6, 80, 0, 1, 2), (3, 2.5, 80, 0, 1, 1), (3, 2.3, 80, 0, 1, 1), (3, 2.3, 80, 0, 1, 1),
    (3, 6, 112, 1, 1, 1), (3, 6, 112, 1, 1, 1), (5, 6, 160, 1, 1, 2), (5, 6, 160, 1, 1, 1), (5, 6, 160, 1, 1, 1)]


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def mb3_blocks(extra_kernel: int) -> list[tuple[str, int, int, int, int, int, bool, bool]]:
    """Every InvertedResidual as (key, inp, hidden, oup, kernel, stride, use_se, use_hs)."""
    blocks, inp = [], 16
    for k, (kernel, t, c, se, hs, s) in enumerate(MB3_CFGS, start=1):
        blocks.append((f"backbone.features.{k}", inp, make_divisible(inp * t), c, kernel, s, bool(se), bool(hs)))
        inp = c
    for b, (inp, ratio, oup) in enumerate([(960, 0.2, 512), (512, 0.25, 256), (256, 0.5, 256), (256, 0.25, 64)]):
        blocks.append((f"backbone.extras.{b}", inp, make_divisible(inp * ratio), oup, extra_kernel, 2, True, True))
    return blocks


def mb3_shapes(extra_kernel: int) -> Shapes:
    shapes = {"backbone.features.0.0.weight": (16, 3, 3, 3), **bn_shapes("backbone.features.0.1", 16),
              "backbone.features.16.0.weight": (960, 160, 1, 1), **bn_shapes("backbone.features.16.1", 960)}
    for key, inp, hidden, oup, kernel, _, se, _ in mb3_blocks(extra_kernel):
        c = f"{key}.conv"
        if inp == hidden:  # dw, BN, act, SE|Identity, pwl, BN
            dw, se_at, pwl = 0, 3, 4
        else:  # pw, BN, act, dw, BN, SE|Identity, act, pwl, BN
            dw, se_at, pwl = 3, 5, 7
            shapes.update({f"{c}.0.weight": (hidden, inp, 1, 1), **bn_shapes(f"{c}.1", hidden)})
        shapes.update({f"{c}.{dw}.weight": (hidden, 1, kernel, kernel), **bn_shapes(f"{c}.{dw + 1}", hidden),
                       f"{c}.{pwl}.weight": (oup, hidden, 1, 1), **bn_shapes(f"{c}.{pwl + 1}", oup)})
        if se:
            squeezed = make_divisible(hidden // 4)
            shapes.update({f"{c}.{se_at}.fc.0.weight": (squeezed, hidden), f"{c}.{se_at}.fc.0.bias": (squeezed,),
                           f"{c}.{se_at}.fc.2.weight": (hidden, squeezed), f"{c}.{se_at}.fc.2.bias": (hidden,)})
    return shapes


def h_swish(x: Tensor) -> Tensor:
    return x * (F.relu6(x + 3) / 6)


def se_layer(state: dict[str, Tensor], key: str, x: Tensor) -> Tensor:
    y = F.adaptive_avg_pool2d(x, 1).flatten(1)
    y = F.relu(F.linear(y, state[f"{key}.fc.0.weight"], state[f"{key}.fc.0.bias"]))
    y = F.relu6(F.linear(y, state[f"{key}.fc.2.weight"], state[f"{key}.fc.2.bias"]) + 3) / 6
    return x * y[:, :, None, None]


def mb3_residual(state: dict[str, Tensor], block: tuple, x: Tensor) -> Tensor:
    key, inp, hidden, oup, kernel, stride, se, hs = block
    act = h_swish if hs else F.relu
    pad = (kernel - 1) // 2
    if inp == hidden:  # dw, BN, act, SE|Identity, pwl, BN
        y = conv(state, f"{key}.conv.0", x, stride=stride, padding=pad, groups=hidden)
        y = act(batch_norm(state, f"{key}.conv.1", y))
        y = se_layer(state, f"{key}.conv.3", y) if se else y
        y = batch_norm(state, f"{key}.conv.5", conv(state, f"{key}.conv.4", y))
    else:  # pw, BN, act, dw, BN, SE|Identity, act, pwl, BN
        y = act(batch_norm(state, f"{key}.conv.1", conv(state, f"{key}.conv.0", x)))
        y = conv(state, f"{key}.conv.3", y, stride=stride, padding=pad, groups=hidden)
        y = batch_norm(state, f"{key}.conv.4", y)
        y = act(se_layer(state, f"{key}.conv.5", y) if se else y)
        y = batch_norm(state, f"{key}.conv.8", conv(state, f"{key}.conv.7", y))
    return x + y if stride == 1 and inp == oup else y


def mb3_forward(state: dict[str, Tensor], x: Tensor, extra_kernel: int) -> list[Tensor]:
    """``MobileNetV3.forward``: features[:13], features[13:], then each extra."""
    x = conv(state, "backbone.features.0.0", x, stride=2, padding=1)
    x = h_swish(batch_norm(state, "backbone.features.0.1", x))
    blocks = mb3_blocks(extra_kernel)
    features = []
    for k, block in enumerate(blocks[:15], start=1):
        x = mb3_residual(state, block, x)
        if k == 12:
            features.append(x)
    x = h_swish(batch_norm(state, "backbone.features.16.1", conv(state, "backbone.features.16.0", x)))
    features.append(x)
    for block in blocks[15:]:
        x = mb3_residual(state, block, x)
        features.append(x)
    return features


# ---- EfficientNet-B3 (efficient_net/: lukemelas' EfficientNet-PyTorch 0.1) -------------------------------------
B3_BLOCKS_ARGS = [  # r1_k3_s11_e1_i32_o16_se0.25, ... as (kernel, repeats, in, out, expand, stride)
    (3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2), (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2), (3, 1, 192, 320, 6, 1)]
B3_WIDTH, B3_DEPTH, B3_BN_EPS = 1.2, 1.4, 1e-3
B3_EXTRAS = [[(384, 128, 1, 1, 0), (128, 256, 3, 2, 1)], [(256, 128, 1, 1, 0), (128, 256, 3, 1, 0)],
             [(256, 128, 1, 1, 0), (128, 256, 3, 1, 0)]]
B3_INDICES = (7, 17, 25)


def round_filters(filters: int) -> int:
    filters *= B3_WIDTH
    new = max(8, int(filters + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * filters else new)


def b3_blocks() -> list[tuple[int, int, int, int, int]]:
    """Every MBConvBlock as (kernel, in, out, expand, stride)."""
    blocks = []
    for kernel, repeats, inp, oup, expand, stride in B3_BLOCKS_ARGS:
        inp, oup = round_filters(inp), round_filters(oup)
        for i in range(int(math.ceil(B3_DEPTH * repeats))):
            blocks.append((kernel, inp if i == 0 else oup, oup, expand, stride if i == 0 else 1))
    return blocks


def b3_shapes() -> Shapes:
    shapes = {"backbone._conv_stem.weight": (40, 3, 3, 3), **bn_shapes("backbone._bn0", 40)}
    for n, (kernel, inp, oup, expand, _) in enumerate(b3_blocks()):
        key, mid, squeezed = f"backbone._blocks.{n}", inp * expand, max(1, int(inp * 0.25))
        if expand != 1:
            shapes.update({f"{key}._expand_conv.weight": (mid, inp, 1, 1), **bn_shapes(f"{key}._bn0", mid)})
        shapes.update({f"{key}._depthwise_conv.weight": (mid, 1, kernel, kernel), **bn_shapes(f"{key}._bn1", mid),
                       f"{key}._se_reduce.weight": (squeezed, mid, 1, 1), f"{key}._se_reduce.bias": (squeezed,),
                       f"{key}._se_expand.weight": (mid, squeezed, 1, 1), f"{key}._se_expand.bias": (mid,),
                       f"{key}._project_conv.weight": (oup, mid, 1, 1), **bn_shapes(f"{key}._bn2", oup)})
    for b, layers in enumerate(B3_EXTRAS):
        for i, (inp, oup, kernel, _, _) in enumerate(layers):
            key = f"backbone.extras.{b}.{2 * i}"
            shapes[f"{key}.weight"], shapes[f"{key}.bias"] = (oup, inp, kernel, kernel), (oup,)
    return shapes


def conv_same(state: dict[str, Tensor], key: str, x: Tensor, stride: int = 1, groups: int = 1) -> Tensor:
    """``Conv2dSamePadding``: TensorFlow's "same" padding, the odd pixel at the bottom/right."""
    weight = state[f"{key}.weight"]
    ih, iw, k = x.shape[-2], x.shape[-1], weight.shape[-1]
    pad_h = max((math.ceil(ih / stride) - 1) * stride + k - ih, 0)
    pad_w = max((math.ceil(iw / stride) - 1) * stride + k - iw, 0)
    x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
    return F.conv2d(x, weight, state.get(f"{key}.bias"), stride, 0, 1, groups)


def b3_forward(state: dict[str, Tensor], x: Tensor) -> list[Tensor]:
    """``EfficientNet.forward`` (eval: no drop connect): the maps after blocks 7, 17, 25, then each extra."""
    def bn(key: str, y: Tensor) -> Tensor:
        return batch_norm(state, key, y, eps=B3_BN_EPS)

    x = F.silu(bn("backbone._bn0", conv_same(state, "backbone._conv_stem", x, stride=2)))
    features = []
    for n, (_, inp, oup, expand, stride) in enumerate(b3_blocks()):
        key, y = f"backbone._blocks.{n}", x
        if expand != 1:
            y = F.silu(bn(f"{key}._bn0", conv_same(state, f"{key}._expand_conv", y)))
        y = F.silu(bn(f"{key}._bn1", conv_same(state, f"{key}._depthwise_conv", y, stride=stride, groups=y.shape[1])))
        squeezed = F.silu(conv_same(state, f"{key}._se_reduce", F.adaptive_avg_pool2d(y, 1)))
        squeezed = conv_same(state, f"{key}._se_expand", squeezed)
        y = torch.sigmoid(squeezed) * y
        y = bn(f"{key}._bn2", conv_same(state, f"{key}._project_conv", y))
        x = x + y if stride == 1 and inp == oup else y
        if n in B3_INDICES:
            features.append(x)
    for b, layers in enumerate(B3_EXTRAS):
        for i, (_, _, _, stride, padding) in enumerate(layers):
            x = F.relu(conv(state, f"backbone.extras.{b}.{2 * i}", x, stride=stride, padding=padding))
        features.append(x)
    return features


# ---- the box predictors (box_predictor.py) --------------------------------------------------------------------

def predictor_shapes(channels: list[int], boxes: list[int], num_classes: int, lite: bool) -> Shapes:
    """``SSDBoxPredictor`` (3x3 convs) or ``SSDLiteBoxPredictor`` (SeparableConv2d ``conv`` = (dw conv with
    bias, BN, ReLU6, 1x1 conv); a 1x1 conv on the last level)."""
    shapes = {}
    for level, (ch, k) in enumerate(zip(channels, boxes)):
        for name, per_box in (("cls_headers", num_classes), ("reg_headers", 4)):
            key, out = f"box_head.predictor.{name}.{level}", k * per_box
            if lite and level < len(channels) - 1:
                shapes.update({f"{key}.conv.0.weight": (ch, 1, 3, 3), f"{key}.conv.0.bias": (ch,),
                               **bn_shapes(f"{key}.conv.1", ch), f"{key}.conv.3.weight": (out, ch, 1, 1),
                               f"{key}.conv.3.bias": (out,)})
            else:
                kernel = 1 if lite else 3
                shapes.update({f"{key}.weight": (out, ch, kernel, kernel), f"{key}.bias": (out,)})
    return shapes


def predict(state: dict[str, Tensor], features: list[Tensor], num_classes: int) -> tuple[Tensor, Tensor]:
    """``BoxPredictor.forward``: (cls_logits [B, N, C], bbox_pred [B, N, 4])."""
    def level(name: str, i: int, f: Tensor, per_box: int) -> Tensor:
        key = f"box_head.predictor.{name}.{i}"
        lite = f"{key}.conv.0.weight" in state
        return head(state, f"{key}.conv" if lite else key, f, per_box, lite)

    cls = torch.cat([level("cls_headers", i, f, num_classes) for i, f in enumerate(features)], 1)
    reg = torch.cat([level("reg_headers", i, f, 4) for i, f in enumerate(features)], 1)
    return cls, reg
