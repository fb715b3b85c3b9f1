"""Build a small SSD-MobileNetV1 frozen graph with TensorFlow, in the node names and ops of a TF Object Detection
API export, with seeded random weights: the test graph of the MobileNetV1 SSD family (tests/data/tf_ssd_mobilenet_v1.pb).

No trained MobileNetV1 SSD graph is at hand to test with (the TF1 zoo's downloads were not reachable), so this
script writes one as the OD API would (``ssd_mobilenet_v1_coco``'s pipeline, depth multiplier 0.0625 to stay small):
``image_tensor`` (uint8) -> ``Preprocessor`` (``ResizeBilinear`` to 300x300 without half-pixel centres,
``x * 2/255 - 1``) -> ``FeatureExtractor/MobilenetV1`` (``Conv2d_0``, ``Conv2d_<i>_depthwise`` /
``Conv2d_<i>_pointwise``, batch norm as ``FusedBatchNorm`` or, in ``Conv2d_0`` and the depthwise units, as the
unfused arithmetic ``x * scale + shift`` of ``slim.batch_norm(fused=False)``; ReLU6; maps ``Conv2d_11_pointwise``,
``Conv2d_13_pointwise`` and the extra layers ``Conv2d_13_pointwise_1_Conv2d_<i>_1x1_<d/2>`` /
``Conv2d_13_pointwise_2_Conv2d_<i>_3x3_s2_<d>``: plain 3x3 convolutions, "SAME" at stride 2) -> ``BoxPredictor_<k>``
(1x1 ``BoxEncodingPredictor`` and ``ClassPredictor`` with biases, ``Reshape`` / ``Reshape_1``) ->
``MultipleGridAnchorGenerator`` (``create_ssd_anchors`` defaults, computed in TF ops as ``grid_anchor_generator``
does) -> ``Postprocessor`` (``Decode`` with scales 10, 10, 5, 5, ``scale_logits``, ``convert_scores`` sigmoid,
per-class ``NonMaxSuppressionV3`` at IoU 0.6 and score 1e-8, at most 100 per class, sorted, clipped to the image
with zero-area boxes dropped, at most 100 in all) -> ``detection_boxes/scores/classes``, ``num_detections``.

    /tmp/tfenv/bin/python tools/tf_make_ssd_graph.py tests/data/tf_ssd_mobilenet_v1.pb
    /tmp/tfenv/bin/python tools/tf_reference.py tests/data/tf_ssd_mobilenet_v1.pb tests/data/tf_ssd_mobilenet_v1.npz
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
SIZE = 300
MULTIPLIER, MIN_DEPTH = 0.0625, 8
NUM_CLASSES = 3  # with background: two classes
# MobileNetV1 (slim mobilenet_v1.MOBILENETV1_CONV_DEFS) after Conv2d_0: (stride, depth) of the separable convs 1..13.
SEPARABLE = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512), (1, 512), (1, 512), (1, 512),
             (1, 512), (2, 1024), (1, 1024))
EXTRA_DEPTHS = (512, 256, 256, 128)
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)
rng = np.random.default_rng(0)


def depth(d: int) -> int:
    return max(int(d * MULTIPLIER), MIN_DEPTH)


def conv_unit(x: tf.Tensor, scope: str, out_ch: int, kernel: int, stride: int = 1, depthwise: bool = False,
              norm: bool = True, act: bool = True, bias: bool = False, fused: bool = True) -> tf.Tensor:
    in_ch = int(x.shape[-1])
    with tf.name_scope(scope + "/"):  # an absolute scope: the graph's node names are the OD API's
        fan_in = kernel * kernel * (1 if depthwise else in_ch)
        if depthwise:
            w = tf.constant(rng.normal(0, math.sqrt(2 / fan_in), (kernel, kernel, in_ch, 1)).astype(np.float32),
                            name="depthwise_weights")
            y = tf1.nn.depthwise_conv2d_native(x, w, [1, stride, stride, 1], "SAME", name="depthwise")
        else:
            w = tf.constant(rng.normal(0, math.sqrt(2 / fan_in), (kernel, kernel, in_ch, out_ch)).astype(np.float32),
                            name="weights")
            y = tf1.nn.conv2d(x, w, [1, stride, stride, 1], "SAME", name="Conv2D")
        channels = int(y.shape[-1])
        if norm:
            with tf.name_scope("BatchNorm"):
                params = [rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.1, channels),
                          rng.normal(0, 0.1, channels), rng.uniform(0.5, 2.0, channels)]
                gamma, beta, mean, var = (tf.constant(p.astype(np.float32), name=n)
                                          for p, n in zip(params, ("gamma", "beta", "moving_mean", "moving_variance")))
                if fused:
                    y = tf1.nn.fused_batch_norm(y, gamma, beta, mean, var, epsilon=0.001, is_training=False,
                                                name="FusedBatchNorm")[0]
                else:  # slim.batch_norm(fused=False), frozen: the arithmetic stays in the graph
                    with tf.name_scope("batchnorm"):
                        scale = tf.math.rsqrt(var + 0.001) * gamma
                        y = y * scale + (beta - mean * scale)
        if bias:
            b = tf.constant(rng.normal(0, 0.5, channels).astype(np.float32), name="biases")
            y = tf.nn.bias_add(y, b, name="BiasAdd")
        if act:
            y = tf.nn.relu6(y, name="Relu6")
    return y


def feature_maps(x: tf.Tensor) -> list[tf.Tensor]:
    scope = "FeatureExtractor/MobilenetV1/"
    # Batch norm unfused (its arithmetic in the graph, as exports of slim's fused=False have it) in Conv2d_0 and
    # the depthwise units, FusedBatchNorm elsewhere: one small graph for both ways.
    net = conv_unit(x, f"{scope}Conv2d_0", depth(32), 3, 2, fused=False)
    maps = []
    for i, (stride, d) in enumerate(SEPARABLE, start=1):
        net = conv_unit(net, f"{scope}Conv2d_{i}_depthwise", 0, 3, stride, depthwise=True, fused=False)
        net = conv_unit(net, f"{scope}Conv2d_{i}_pointwise", depth(d), 1)
        if i in (11, 13):
            maps.append(net)
    for i, d in enumerate(EXTRA_DEPTHS, start=2):
        net = conv_unit(net, f"{scope}Conv2d_13_pointwise_1_Conv2d_{i}_1x1_{d // 2}", depth(d // 2), 1)
        net = conv_unit(net, f"{scope}Conv2d_13_pointwise_2_Conv2d_{i}_3x3_s2_{d}", depth(d), 3, 2)
        maps.append(net)
    return maps


def anchor_boxes() -> list[tuple[list[float], list[float]]]:
    """create_ssd_anchors' (scales, ratios) per level; the interpolated scale in float32 as the zoo's graphs."""
    scales = [0.2 + (0.95 - 0.2) * i / 5 for i in range(6)] + [1.0]
    levels = [([0.1, scales[0], scales[0]], [1.0, 2.0, 0.5])]
    for s, s_next in zip(scales[1:-1], scales[2:]):
        levels.append(([s] * 5 + [float(np.sqrt(np.float32(s) * np.float32(s_next)))], [*ASPECT_RATIOS, 1.0]))
    return levels


def anchors(sides: list[int]) -> tf.Tensor:
    """MultipleGridAnchorGenerator._generate + grid_anchor_generator.tile_anchors, op for op (square images)."""
    with tf.name_scope("MultipleGridAnchorGenerator/"):
        base = tf.constant([1.0, 1.0], name="base_anchor_size")
        base_h, base_w = base[0], base[1]  # StridedSlice of the base size
        out = []
        for side, (scales, ratios) in zip(sides, anchor_boxes()):
            stride = 1.0 / tf.cast(tf.constant(side), tf.float32)
            offset = 0.5 * stride
            root = tf.sqrt(tf.constant(np.float32(ratios)))
            heights = tf.constant(np.float32(scales)) / root * base_h
            widths = tf.constant(np.float32(scales)) * root * base_w
            y = tf.cast(tf.range(side), tf.float32) * stride + offset
            x = tf.cast(tf.range(side), tf.float32) * stride + offset
            x, y = tf.meshgrid(x, y)  # [side, side]
            # object_detection.utils.ops.meshgrid(widths, x): [side, side, K] grids of the box sizes and centres.
            shape = [side, side, len(scales)]
            w_grid, x_grid = tf.broadcast_to(widths, shape), tf.broadcast_to(x[..., None], shape)
            h_grid, y_grid = tf.broadcast_to(heights, shape), tf.broadcast_to(y[..., None], shape)
            centers = tf.reshape(tf.stack([y_grid, x_grid], axis=3), [-1, 2])
            sizes = tf.reshape(tf.stack([h_grid, w_grid], axis=3), [-1, 2])
            out.append(tf.concat([centers - 0.5 * sizes, centers + 0.5 * sizes], 1))
    return tf.concat(out, 0, name="Concatenate/concat")


def postprocess(encodings: tf.Tensor, logits: tf.Tensor, anchor_yxyx: tf.Tensor) -> None:
    """One image's detections as the OD API's post-processing makes them (batch of one)."""
    with tf.name_scope("Postprocessor/"):
        with tf.name_scope("Decode"):
            with tf.name_scope("get_center_coordinates_and_sizes"):
                ay0, ax0, ay1, ax1 = tf.unstack(tf.transpose(anchor_yxyx))
                ha, wa = ay1 - ay0, ax1 - ax0
                ycenter_a, xcenter_a = ay0 + ha / 2.0, ax0 + wa / 2.0
            ty, tx, th, tw = tf.unstack(tf.transpose(encodings[0]))
            ty, tx, th, tw = ty / 10.0, tx / 10.0, th / 5.0, tw / 5.0
            w, h = tf.exp(tw) * wa, tf.exp(th) * ha
            yc, xc = ty * ha + ycenter_a, tx * wa + xcenter_a
            boxes = tf.transpose(tf.stack([yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0]))
        scores = tf.sigmoid(tf.math.truediv(logits, 1.0, name="scale_logits"), name="convert_scores")[0, :, 1:]
        with tf.name_scope("BatchMultiClassNonMaxSuppression/MultiClassNonMaxSuppression"):
            picked_boxes, picked_scores, picked_classes = [], [], []
            for c in range(NUM_CLASSES - 1):
                size = tf.minimum(tf.constant(100), tf.shape(boxes)[0])
                keep = tf.image.non_max_suppression(boxes, scores[:, c], size, iou_threshold=0.6, score_threshold=1e-8)
                picked_boxes.append(tf.gather(boxes, keep))
                picked_scores.append(tf.gather(scores[:, c], keep))
                picked_classes.append(tf.zeros_like(keep, tf.float32) + float(c))
            all_boxes, all_scores = tf.concat(picked_boxes, 0), tf.concat(picked_scores, 0)
            all_classes = tf.concat(picked_classes, 0)
            order = tf.nn.top_k(all_scores, tf.size(all_scores)).indices
            all_boxes, all_scores, all_classes = (tf.gather(t, order) for t in (all_boxes, all_scores, all_classes))
            clipped = tf.clip_by_value(all_boxes, 0.0, 1.0)  # ClipToWindow, window [0, 0, 1, 1]
            area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
            nonzero = tf.reshape(tf.where(area > 0.0), [-1])
            clipped, all_scores, all_classes = (tf.gather(t, nonzero) for t in (clipped, all_scores, all_classes))
        with tf.name_scope("BatchMultiClassNonMaxSuppression/map/while/PadOrClipBoxList"):
            total = tf.constant(100, name="sub/y")
            n = tf.minimum(tf.shape(all_scores)[0], total)
    pad = total - n
    tf.identity(tf.pad(clipped[:n], [[0, pad], [0, 0]])[None], name="detection_boxes")
    tf.identity(tf.pad(all_scores[:n], [[0, pad]])[None], name="detection_scores")
    tf.identity(tf.pad(all_classes[:n] + 1.0, [[0, pad]])[None], name="detection_classes")
    tf.identity(tf.cast(n, tf.float32)[None], name="num_detections")


def build() -> tf1.GraphDef:
    graph = tf.Graph()
    with graph.as_default():
        image = tf1.placeholder(tf.uint8, [None, None, None, 3], name="image_tensor")
        x = tf.cast(image, tf.float32, name="ToFloat")
        with tf.name_scope("Preprocessor/"):
            x = tf1.image.resize_bilinear(x, tf.constant([SIZE, SIZE]), align_corners=False, half_pixel_centers=False)
            x = tf.subtract(tf.multiply(2.0 / 255.0, x, name="mul"), 1.0, name="sub")
        maps = feature_maps(x)
        encodings, logits = [], []
        for k, fmap in enumerate(maps):
            boxes_here = 3 if k == 0 else 6
            with tf.name_scope(f"BoxPredictor_{k}/"):
                box = conv_unit(fmap, f"BoxPredictor_{k}/BoxEncodingPredictor", boxes_here * 4, 1, norm=False,
                                act=False, bias=True)
                encodings.append(tf.reshape(box, [1, -1, 1, 4], name="Reshape"))
                cls = conv_unit(fmap, f"BoxPredictor_{k}/ClassPredictor", boxes_here * NUM_CLASSES, 1, norm=False,
                                act=False, bias=True)
                logits.append(tf.reshape(cls, [1, -1, NUM_CLASSES], name="Reshape_1"))
        box_encodings = tf.squeeze(tf.concat(encodings, 1, name="concat"), axis=2, name="Squeeze")
        class_logits = tf.concat(logits, 1, name="concat_1")
        sides = [int(m.shape[1]) for m in maps]
        postprocess(box_encodings, class_logits, anchors(sides))
    return graph.as_graph_def()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the .pb to write")
    args = parser.parse_args()
    graph_def = build()
    args.out.write_bytes(graph_def.SerializeToString())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB, {len(graph_def.node)} nodes)")


if __name__ == "__main__":
    main()
