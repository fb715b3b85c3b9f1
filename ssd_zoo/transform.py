"""The model's input transform: check, resize to the fixed input size, normalise, batch — and map back.

SSD sees every image at one fixed size (300x300 or 512x512), stretched without keeping the aspect ratio,
as in the paper and in torchvision (``resize="stretch"``, the default). ``resize="letterbox"`` keeps it: each
image is first padded at the bottom and right to a square of its longer side (with the normalisation mean, or
``pad_fill``), then resized; boxes scale by one factor per image, so they map back exactly. Boxes follow the
same resize on the way in and the inverse on the way out.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

# torchvision's SSD300 normalisation: RGB in [0, 1], mean of ImageNet in 0..255 steps, std 1/255 — i.e. the
# Caffe convention (subtract the mean pixel from 0..255 values) that ssd.pytorch's weights expect too.
CAFFE_MEAN = (0.48235, 0.45882, 0.40784)
CAFFE_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)
# ImageNet's normalisation on the 0..1 scale, as timm and torchvision's classifiers use it.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("stretch", "letterbox")  # SSDTransform(resize=...)
# SSDTransform(coordinates=...): where a resized pixel samples the image, in ONNX Resize's names. "half_pixel":
# pixel centres map onto pixel centres (PyTorch's align_corners=False, OpenCV, TF2); "asymmetric": output pixel j
# samples input position j * in / out (TensorFlow 1's ResizeBilinear, which TF OD API graphs resize with).
COORDINATES = ("half_pixel", "asymmetric")


def _asymmetric_axis(in_size: int, out_size: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Per output pixel of one axis: the lower and upper input pixel and the weight of the upper, as TF 1's
    ``ResizeBilinear`` (``half_pixel_centers=False``) computes them, in float32: ``x = j * (in / out)``."""
    scale = torch.tensor(float(in_size), dtype=torch.float32) / torch.tensor(float(out_size), dtype=torch.float32)
    position = torch.arange(out_size, dtype=torch.float32, device=device) * scale.to(device)
    lower = position.floor()
    upper = position.ceil().clamp(max=in_size - 1)
    return lower.long(), upper.long(), position - lower


def resize_bilinear(images: Tensor, size: tuple[int, int], coordinates: str = "half_pixel") -> Tensor:
    """``[B, C, H, W]`` -> ``[B, C, *size]``, bilinear, sampling at ``coordinates`` (see :data:`COORDINATES`).

    "asymmetric" interpolates as TensorFlow's kernel: along x first, then y, each as ``a + (b - a) * w``.
    """
    if coordinates == "half_pixel":
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    if coordinates != "asymmetric":
        raise ValueError(f"coordinates={coordinates!r}: expected one of {COORDINATES}")
    rows_low, rows_high, wy = _asymmetric_axis(int(images.shape[-2]), size[0], images.device)
    cols_low, cols_high, wx = _asymmetric_axis(int(images.shape[-1]), size[1], images.device)
    wx, wy = wx.to(images.dtype), wy.to(images.dtype)[:, None]

    def along_x(rows: Tensor) -> Tensor:
        left, right = rows.index_select(-1, cols_low), rows.index_select(-1, cols_high)
        return left + (right - left) * wx

    top, bottom = along_x(images.index_select(-2, rows_low)), along_x(images.index_select(-2, rows_high))
    return top + (bottom - top) * wy


class Targets(NamedTuple):
    """A batch's ground truth, padded to its largest ``G``, in pixels of the network input.

    Attributes:
        boxes: ``[B, G, 4]`` float32 xyxy, stretched like their images (zeros on padding).
        labels: ``[B, G]`` int64, 0 on padding.
        valid: ``[B, G]`` bool, False on padding.
    """

    boxes: Tensor
    labels: Tensor
    valid: Tensor


class Batch(NamedTuple):
    """What the transform hands to the network.

    Attributes:
        images: ``[B, 3, S, S]`` normalised, at the network input size, channels_last.
        original_sizes: per image, its ``(height, width)`` before resizing.
        targets: the padded ground truth (when targets were given), else None.
    """

    images: Tensor
    original_sizes: list[tuple[int, int]]
    targets: Targets | None = None


def check_images(images: list[Tensor]) -> None:
    """Raise TypeError/ValueError naming the image index for anything but float ``[3, H, W]`` finite tensors."""
    for i, image in enumerate(images):
        if not isinstance(image, Tensor) or not image.is_floating_point():
            found = image.dtype if isinstance(image, Tensor) else type(image).__name__
            raise TypeError(f"images[{i}]: expected a float tensor with values in [0, 1], found {found}")
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"images[{i}]: expected shape [3, H, W] (RGB, channels first), found {list(image.shape)}")
        if image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"images[{i}]: expected at least one pixel, found shape {list(image.shape)}")


def check_targets(targets: list[dict[str, Tensor]], num_images: int) -> None:
    """Raise ValueError naming the image for a missing key or a mis-shaped/mis-typed ``boxes`` or ``labels``.

    ``boxes`` may have any real dtype (torchvision's VOC wrapper gives int64; they are used as float32) and be a
    ``tv_tensors.BoundingBoxes`` in XYXY; other keys of a target (``image_id``, ``difficult``, ...) are ignored.
    """
    if len(targets) != num_images:
        raise ValueError(f"targets: expected one dict per image ({num_images}), found {len(targets)}")
    for i, target in enumerate(targets):
        if not isinstance(target, Mapping):
            raise TypeError(f"targets[{i}]: expected a dict with 'boxes' and 'labels', found {type(target).__name__}")
        for key in ("boxes", "labels"):
            if key not in target:
                raise ValueError(f"targets[{i}]: missing key {key!r} (expected 'boxes' and 'labels')")
        boxes, labels = target["boxes"], target["labels"]
        for key, value in (("boxes", boxes), ("labels", labels)):
            if not isinstance(value, Tensor):
                raise TypeError(f"targets[{i}][{key!r}]: expected a tensor, found {type(value).__name__}")
        if boxes.dim() != 2 or boxes.shape[-1] != 4 or boxes.is_complex() or boxes.dtype == torch.bool:
            raise ValueError(f"targets[{i}]['boxes']: expected a real-valued tensor [N, 4] (xyxy pixels), found "
                             f"{boxes.dtype} {list(boxes.shape)}")
        box_format = getattr(boxes, "format", None)  # a tv_tensors.BoundingBoxes knows its own
        if box_format is not None and getattr(box_format, "name", box_format) != "XYXY":
            raise ValueError(f"targets[{i}]['boxes']: expected XYXY boxes, found format {box_format.name} "
                             "(convert with torchvision.transforms.v2.ConvertBoundingBoxFormat('XYXY'))")
        if labels.shape != boxes.shape[:1] or labels.dtype != torch.int64:
            raise ValueError(
                f"targets[{i}]['labels']: expected int64 [{boxes.shape[0]}], found {labels.dtype} {list(labels.shape)}"
            )


def check_target_values(targets: Targets, num_classes: int) -> None:
    """Raise ValueError naming image and box for NaN/inf or degenerate boxes and out-of-range labels.

    Takes the padded batch (see :class:`Targets`; the boxes may be at any scale): one host sync per batch.
    The model calls it, since it knows ``num_classes``; the transform checks only structure.
    """
    boxes, labels, valid = targets
    non_finite = ~torch.isfinite(boxes).all(-1)
    degenerate = (boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])
    bad_label = (labels < 1) | (labels >= num_classes)
    if not (valid & (non_finite | degenerate | bad_label)).any():
        return
    for name, mask in (("non_finite", non_finite), ("degenerate", degenerate), ("label", bad_label)):
        hits = (valid & mask).nonzero()
        if len(hits):
            i, j = hits[0].tolist()
            break
    if name == "label":
        raise ValueError(
            f"targets[{i}]['labels'][{j}] = {int(labels[i, j])}: expected a class in [1, {num_classes}) (0 is background)"
        )
    problem = "found NaN or inf" if name == "non_finite" else "expected xyxy with x2 > x1 and y2 > y1"
    raise ValueError(f"targets[{i}]['boxes'][{j}] = {boxes[i, j].tolist()} (at the network input): {problem}")


class SSDTransform(nn.Module):
    """Resize (bilinear) to ``size x size``, normalise with ``mean``/``std`` (0..1 scale), batch.

    Resizing is linear, so normalising after it gives the same values as before it, on far fewer pixels.

    Args:
        size: the square network input ``S``.
        mean, std: RGB normalisation on the 0..1 scale.
        resize: ``"stretch"`` (each axis to ``S``, the paper's and torchvision's) or ``"letterbox"`` (pad at the
            bottom and right to a square of the longer side, then resize: aspect ratio kept, content at the
            top left, so box coordinates only scale).
        pad_fill: the letterbox padding colour (RGB, 0..1); None: ``mean`` (zero after normalisation).
        coordinates: where resized pixels sample the image (:data:`COORDINATES`): ``"half_pixel"`` (PyTorch's
            bilinear resize) or ``"asymmetric"`` (TensorFlow 1's, for the TF Object Detection API's graphs).
    """

    def __init__(self, size: int, mean: tuple[float, ...] = CAFFE_MEAN, std: tuple[float, ...] = CAFFE_STD,
                 resize: str = "stretch", pad_fill: tuple[float, ...] | None = None,
                 coordinates: str = "half_pixel") -> None:
        super().__init__()
        if coordinates not in COORDINATES:
            raise ValueError(f"coordinates={coordinates!r}: expected one of {COORDINATES}")
        self.coordinates = coordinates
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize={resize!r}: expected one of {RESIZE_MODES}")
        if pad_fill is not None and len(pad_fill) != 3:
            raise ValueError(f"pad_fill: expected 3 values (RGB, 0..1), found {list(pad_fill)}")
        self.size = size
        self.resize_mode = resize
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        fill = self.mean.flatten() if pad_fill is None else torch.tensor([float(f) for f in pad_fill])
        self.pad_fill = None if pad_fill is None else fill.tolist()  # as given (float32), for the model record
        self.register_buffer("fill", fill.view(1, 3, 1, 1).clone(), persistent=False)

    def _square(self, images: Tensor) -> Tensor:
        """Letterbox: ``[B, 3, H, W]`` -> ``[B, 3, L, L]``, ``L = max(H, W)``, padded at the bottom and right
        with ``fill``; stretch (or an already square batch): unchanged."""
        height, width = images.shape[-2:]
        if self.resize_mode == "stretch" or height == width:
            return images
        side = max(height, width)
        canvas = self.fill.to(images.dtype).expand(images.shape[0], 3, side, side).clone()
        canvas[..., :height, :width] = images
        return canvas

    def scales(self, original_sizes: list[tuple[int, int]], device: torch.device | None = None) -> Tensor:
        """``[B, 4]`` float32 factors ``(sx, sy, sx, sy)`` from each image's pixels to the network input's:
        ``S / W, S / H`` (stretch) or ``S / max(H, W)`` on both axes (letterbox)."""
        if self.resize_mode == "letterbox":
            original_sizes = [(max(h, w),) * 2 for h, w in original_sizes]
        # float32 new/old ratios, as torchvision's resize_boxes computes them, so resized boxes agree bit for bit.
        return torch.tensor([[self.size / w, self.size / h] * 2 for h, w in original_sizes], device=device)

    def resize(self, images: list[Tensor] | Tensor) -> tuple[Tensor, list[tuple[int, int]]]:
        """Checked images -> ``([B, 3, S, S]`` bilinear resize, each image's ``(H, W)`` before it).

        A ``[B, 3, H, W]`` tensor is resized as one batch (not at all when already ``S x S``), so that
        tracing for export keeps the batch axis dynamic.
        """
        out_size = (self.size, self.size)
        if isinstance(images, Tensor) and images.dim() == 4 and len(images):
            check_images([images[0]])  # one tensor: one dtype and shape for all
            height, width = int(images.shape[-2]), int(images.shape[-1])
            if (height, width) != out_size:
                images = resize_bilinear(self._square(images), out_size, self.coordinates)
            return images, [(height, width)] * images.shape[0]
        images = list(images)
        if not images:
            raise ValueError("images: expected at least one image, found an empty list")
        check_images(images)
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        if len(set(sizes)) == 1:
            return resize_bilinear(self._square(torch.stack(images)), out_size, self.coordinates), sizes
        return torch.cat([resize_bilinear(self._square(im[None]), out_size, self.coordinates) for im in images]), sizes

    def normalize(self, images: Tensor) -> Tensor:
        """``[B, 3, S, S]`` RGB in [0, 1] at the input size -> normalised, channels_last (no resizing)."""
        # channels_last (NHWC): the layout in which oneDNN and cuDNN run convolutions fastest (see SSD).
        images = images.to(self.mean.dtype)  # float64/float16 pictures into the model's own dtype
        return ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def forward(self, images: list[Tensor] | Tensor, targets: list[dict[str, Tensor]] | None = None) -> Batch:
        """``images``: list of float ``[3, H, W]`` in [0, 1] (or ``[B, 3, H, W]``); targets as torchvision's.

        Returns the batch with ``targets`` padded and stretched like the images (see :class:`Batch`); label
        ranges and box values are checked by the model (:func:`check_target_values`).
        """
        resized, sizes = self.resize(images)
        if not torch.jit.is_tracing() and not torch.isfinite(resized).all():
            bad = next(i for i, im in enumerate(images) if not torch.isfinite(im).all())
            raise ValueError(f"images[{bad}]: found NaN or inf values")
        padded = None
        if targets is not None:
            check_targets(targets, len(images))
            padded = self.pad_targets(targets, sizes, resized.device)
        return Batch(self.normalize(resized), sizes, padded)

    def pad_targets(self, targets: list[dict[str, Tensor]], original_sizes: list[tuple[int, int]],
                    device: torch.device) -> Targets:
        """The targets padded into one :class:`Targets`, boxes stretched like their images."""
        scales = self.scales(original_sizes, device)
        boxes = [t["boxes"].to(device, torch.float32) for t in targets]
        labels = pad_sequence([t["labels"].to(device) for t in targets], batch_first=True)
        counts = torch.tensor([len(b) for b in boxes], device=device)
        valid = torch.arange(labels.shape[1], device=device)[None, :] < counts[:, None]
        return Targets(pad_sequence(boxes, batch_first=True) * scales[:, None, :], labels, valid)

    def postprocess(self, detections: list[dict[str, Tensor]], original_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Map each image's ``boxes`` from the network input back to its own pixels (new dicts); letterboxed
        boxes are clipped to the image (the padding is no part of it)."""
        out = []
        for det, (h, w) in zip(detections, original_sizes):
            side_w, side_h = (max(h, w),) * 2 if self.resize_mode == "letterbox" else (w, h)
            boxes = det["boxes"] * torch.tensor([side_w / self.size, side_h / self.size] * 2, dtype=det["boxes"].dtype,
                                                device=det["boxes"].device)
            if self.resize_mode == "letterbox" and h != w:
                boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                                     boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1)
            out.append({**det, "boxes": boxes})
        return out
