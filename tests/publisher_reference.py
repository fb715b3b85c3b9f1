"""Plain-ops re-implementations of other projects' SSDs, written from reading their code, for the parity tests.

Nothing here imports ssd_zoo: a network is a list of layer descriptions walked the way the publisher's
``forward`` walks its ``nn.ModuleList``, over a state dict in the publisher's own key layout.
Read from: lufficc/SSD (``ssd/modeling/backbone/vgg.py``, ``ssd/modeling/box_head/box_predictor.py``,
``ssd/modeling/anchors/prior_box.py``, ``ssd/utils/box_utils.py``, ``ssd/layers/__init__.py`` L2Norm) and
qfgaohao/pytorch-ssd (``vision/ssd/ssd.py``, ``vgg_ssd.py``, ``mobilenetv1_ssd.py``, ``mobilenet_v2_ssd_lite.py``,
``vision/nn/mobilenet.py``, ``mobilenet_v2.py``, ``scaled_l2_norm.py``, ``vision/utils/box_utils.py``).
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

# ---- weights: random, in a given key -> shape table, scaled so that activations stay O(1) -------------------


def random_state(shapes: dict[str, tuple[int, ...]], seed: int, gains: dict[str, float] | None = None,
                 scales: tuple[str, ...] = ()) -> dict[str, Tensor]:
    """Random tensors for a key -> shape table: He-scaled conv weights (times ``gains[key]`` where given, e.g.
    1/100 for a first conv fed 0..255 values), small biases, BatchNorm statistics away from identity, and the
    1-D ``scales`` keys (L2Norm) near 20."""
    g = torch.Generator().manual_seed(seed)
    gains = gains or {}
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BatchNorm gamma, or an L2Norm scale (initialised to 20 by both projects)
            state[key] = (20.0 if key in scales else 1.0) * (0.9 + 0.2 * torch.rand(shape, generator=g))
        else:
            fan_in = math.prod(shape[1:])  # a conv's [out, in, kh, kw] or a linear layer's [out, in]
            state[key] = gains.get(key, 1.0) * math.sqrt(2.0 / fan_in) * torch.randn(shape, generator=g)
    return state


def bn_shapes(key: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{key}.weight": (channels,), f"{key}.bias": (channels,), f"{key}.running_mean": (channels,),
            f"{key}.running_var": (channels,), f"{key}.num_batches_tracked": ()}


# ---- layers -----------------------------------------------------------------------------------------------

def conv(state: dict[str, Tensor], key: str, x: Tensor, *, stride: int = 1, padding: int = 0, dilation: int = 1,
         groups: int = 1) -> Tensor:
    return F.conv2d(x, state[f"{key}.weight"], state.get(f"{key}.bias"), stride, padding, dilation, groups)


def batch_norm(state: dict[str, Tensor], key: str, x: Tensor, eps: float = 1e-5) -> Tensor:
    return F.batch_norm(x, state[f"{key}.running_mean"], state[f"{key}.running_var"], state[f"{key}.weight"],
                        state[f"{key}.bias"], False, 0.0, eps)


def head(state: dict[str, Tensor], key: str, x: Tensor, per_box: int, lite: bool = False) -> Tensor:
    """``compute_header`` / ``BoxPredictor.forward``: conv, permute to NHWC, view ``[B, -1, per_box]``; ``lite``:
    SeperableConv2d (depthwise conv with bias, BN, ReLU6, pointwise) where ``key.0`` exists."""
    if lite and f"{key}.0.weight" in state:
        channels = x.shape[1]
        x = conv(state, f"{key}.0", x, padding=1, groups=channels)
        x = F.relu6(batch_norm(state, f"{key}.1", x))
        y = conv(state, f"{key}.3", x)
    else:
        kernel = state[f"{key}.weight"].shape[-1]
        y = conv(state, key, x, padding=kernel // 2)
    return y.permute(0, 2, 3, 1).reshape(x.shape[0], -1, per_box)


# ---- MobileNetV2 (torchvision's and both projects' inverted residuals) ----------------------------------------
MB2_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]  # t, c, n, s
MB2_EXTRAS = [(1280, 512, 0.2), (512, 256, 0.25), (256, 256, 0.5), (256, 64, 0.25)]  # (inp, oup, expand_ratio)


def mb2_blocks() -> list[tuple[int, int, int, int]]:
    """MobileNetV2.features[1:18] as (inp, oup, stride, expand_ratio)."""
    blocks, inp = [], 32
    for t, c, n, s in MB2_SETTING:
        for i in range(n):
            blocks.append((inp, c, s if i == 0 else 1, t))
            inp = c
    return blocks


# ---- VGG16 (ssd.pytorch's add_vgg, copied by both projects) -------------------------------------------------

VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]


def vgg_layers() -> list[tuple]:
    """``add_vgg(cfg)`` as descriptions: ("conv", in, out, kernel, padding, dilation) / ("relu",) / ("pool", ...)."""
    layers, in_ch = [], 3
    for v in VGG_CFG:
        if v in ("M", "C"):
            layers.append(("pool", 2, 2, 0, v == "C"))
        else:
            layers += [("conv", in_ch, v, 3, 1, 1), ("relu",)]
            in_ch = v
    layers += [("pool", 3, 1, 1, False), ("conv", 512, 1024, 3, 6, 6), ("relu",), ("conv", 1024, 1024, 1, 0, 1),
               ("relu",)]
    return layers


def vgg_extras(size: int) -> list[tuple[int, int, int, int, int]]:
    """lufficc's ``add_extras(extras_base[size], 1024, size)``: (in, out, kernel, stride, padding) per conv."""
    cfg = {300: [256, "S", 512, 128, "S", 256, 128, 256, 128, 256],
           512: [256, "S", 512, 128, "S", 256, 128, "S", 256, 128, "S", 256]}[size]
    layers, in_ch, flag = [], 1024, False
    for k, v in enumerate(cfg):
        if in_ch != "S":
            if v == "S":
                layers.append((in_ch, cfg[k + 1], (1, 3)[flag], 2, 1))
            else:
                layers.append((in_ch, v, (1, 3)[flag], 1, 0))
            flag = not flag
        in_ch = v
    if size == 512:
        layers += [(in_ch, 128, 1, 1, 0), (128, 256, 4, 1, 1)]
    return layers


def vgg_shapes(prefix: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for i, layer in enumerate(vgg_layers()):
        if layer[0] == "conv":
            _, in_ch, out_ch, kernel, _, _ = layer
            shapes[f"{prefix}{i}.weight"], shapes[f"{prefix}{i}.bias"] = (out_ch, in_ch, kernel, kernel), (out_ch,)
    return shapes


def run_vgg(state: dict[str, Tensor], prefix: str, x: Tensor, start: int, stop: int) -> Tensor:
    for i, layer in enumerate(vgg_layers()[start:stop], start):
        if layer[0] == "conv":
            x = conv(state, f"{prefix}{i}", x, padding=layer[4], dilation=layer[5])
        elif layer[0] == "relu":
            x = F.relu(x)
        else:
            _, kernel, stride, padding, ceil = layer
            x = F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil)
    return x


def l2norm_lufficc(x: Tensor, weight: Tensor) -> Tensor:
    norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
    return weight[None, :, None, None] * (x / norm)


def l2norm_qfgaohao(x: Tensor, scale: Tensor) -> Tensor:
    return F.normalize(x, p=2, dim=1) * scale[None, :, None, None]


# ---- priors and decoding (lufficc's PriorBox == qfgaohao's generate_ssd_priors) -----------------------------

def priors(image_size: int, feature_maps: list[int], strides: list[float], min_sizes: list[float],
           max_sizes: list[float], aspect_ratios: list[list[int]], clip: bool = True) -> Tensor:
    """``[N, 4]`` (cx, cy, w, h) relative to the image, in the publishers' loop order."""
    out = []
    for k, f in enumerate(feature_maps):
        scale = image_size / strides[k]
        for i, j in itertools.product(range(f), repeat=2):
            cx, cy = (j + 0.5) / scale, (i + 0.5) / scale
            size = min_sizes[k] / image_size
            out.append([cx, cy, size, size])
            size = math.sqrt(min_sizes[k] * max_sizes[k]) / image_size
            out.append([cx, cy, size, size])
            size = min_sizes[k] / image_size
            for ratio in aspect_ratios[k]:
                ratio = math.sqrt(ratio)
                out.append([cx, cy, size * ratio, size / ratio])
                out.append([cx, cy, size / ratio, size * ratio])
    result = torch.tensor(out)
    return result.clamp(0, 1) if clip else result


def decode(locations: Tensor, center_form_priors: Tensor, center_variance: float = 0.1,
           size_variance: float = 0.2) -> Tensor:
    """``convert_locations_to_boxes`` then ``center_form_to_corner_form``: xyxy relative to the image."""
    p = center_form_priors[None]
    boxes = torch.cat([locations[..., :2] * center_variance * p[..., 2:] + p[..., :2],
                       torch.exp(locations[..., 2:] * size_variance) * p[..., 2:]], dim=-1)
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], dim=-1)


def predictions(confidences: Tensor, locations: Tensor, center_form_priors: Tensor) -> tuple[Tensor, Tensor]:
    """The eval path of both projects: ``(softmax over classes [B, N, C], boxes xyxy relative [B, N, 4])``."""
    return F.softmax(confidences, dim=2), decode(locations, center_form_priors)
