"""The SSD model's contract: torchvision I/O, SSD512 shapes, the registry, and clear errors on bad input."""
from __future__ import annotations

import copy

import pytest
import torch

import ssd_zoo
from ssd_zoo.registry import get_builder


@pytest.fixture(scope="module")
def ssd300() -> ssd_zoo.SSD:
    torch.manual_seed(0)
    return ssd_zoo.build("ssd300_vgg16", num_classes=4)


def target(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64)}


def test_ssd300_structure(ssd300) -> None:
    assert ssd300.backbone.out_channels == [512, 1024, 512, 256, 256, 256]
    with torch.no_grad():
        features = ssd300.backbone(torch.zeros(1, 3, 300, 300))
    assert [f.shape[-1] for f in features] == [38, 19, 10, 5, 3, 1]
    assert ssd300.default_boxes(features, (300, 300)).shape == (8732, 4)
    assert torch.equal(ssd300.backbone.l2norm.weight.detach(), torch.full((512,), 20.0))


def test_ssd512_shapes() -> None:
    model = ssd_zoo.build("ssd512_vgg16").eval()
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, 512, 512))
        cls_logits, box_regression = model.head(features)
    assert [f.shape[-1] for f in features] == [64, 32, 16, 8, 4, 2, 1]
    assert cls_logits.shape == (1, 24564, 21) and box_regression.shape == (1, 24564, 4)
    assert model.backbone.extras.conv12.conv12_2.kernel_size == (4, 4)


def test_eval_output_in_each_image_coordinates(ssd300) -> None:
    ssd300.eval().score_thresh = 0.0
    images = [torch.rand(3, 120, 200), torch.rand(3, 90, 60)]
    with torch.no_grad():
        dets = ssd300(images)
    for det, image in zip(dets, images):
        assert set(det) == {"boxes", "scores", "labels"}
        assert det["boxes"].shape[1] == 4 and det["labels"].dtype == torch.int64
        assert det["boxes"][:, 2].max() <= image.shape[-1] + 1e-4 and det["boxes"][:, 3].max() <= image.shape[-2] + 1e-4
    with torch.no_grad():
        batched = ssd300(torch.stack([images[0], images[0]]))  # a [B, 3, H, W] tensor works too
    torch.testing.assert_close(batched[0]["boxes"], dets[0]["boxes"])
    ssd300.score_thresh = 0.01


def test_training_step_and_targets_untouched(ssd300) -> None:
    ssd300.train()
    images = [torch.rand(3, 64, 80), torch.rand(3, 50, 50)]
    targets = [target([[5, 5, 40, 30], [10, 20, 70, 60]], [1, 3]), target([], [])]
    before = copy.deepcopy(targets)
    losses = ssd300(images, targets)
    assert set(losses) == {"bbox_regression", "classification"}
    sum(losses.values()).backward()
    assert ssd300.backbone.features.conv1_1.weight.grad is not None
    for t, b in zip(targets, before):
        assert torch.equal(t["boxes"], b["boxes"]) and torch.equal(t["labels"], b["labels"])


IMAGE = torch.rand(3, 40, 40)


@pytest.mark.parametrize(
    "images,targets,error,message",
    [
        ([IMAGE, IMAGE], [target([[1, 1, 9, 9]], [1]), target([[5, 5, 5, 9]], [1])], ValueError, r"targets\[1\]\['boxes'\]\[0\]"),
        ([IMAGE], [target([[1, 1, 9, 9]], [4])], ValueError, r"labels'\]\[0\] = 4.*\[1, 4\)"),
        ([IMAGE], [target([[1, 1, 9, 9]], [0])], ValueError, r"0 is background"),
        ([(IMAGE * 255).to(torch.uint8)], [target([[1, 1, 9, 9]], [1])], TypeError, r"images\[0\].*float.*uint8"),
        ([torch.rand(1, 40, 40)], [target([[1, 1, 9, 9]], [1])], ValueError, r"images\[0\].*\[3, H, W\].*\[1, 40, 40\]"),
        ([IMAGE, torch.full((3, 40, 40), float("nan"))], [target([[1, 1, 9, 9]], [1])] * 2, ValueError, r"images\[1\].*NaN"),
        ([IMAGE], [target([[1, 1, float("inf"), 9]], [1])], ValueError, r"targets\[0\]\['boxes'\].*NaN or inf"),
        ([IMAGE], [{"boxes": torch.zeros(0, 4)}], ValueError, r"targets\[0\]: missing key 'labels'"),
        ([IMAGE], None, ValueError, r"expected targets"),
        ([IMAGE], [target([[1, 1, 9, 9]], [1])] * 2, ValueError, r"one dict per image \(1\), found 2"),
    ],
)
def test_bad_input_raises_clearly(ssd300, images, targets, error, message) -> None:
    ssd300.train()
    with pytest.raises(error, match=message):
        ssd300(images, targets)


def test_registry() -> None:
    assert {"ssd300_vgg16", "ssd512_vgg16"} <= set(ssd_zoo.list_models())
    assert ssd_zoo.list_models("ssd512*") == [n for n in ssd_zoo.list_models() if n.startswith("ssd512")]
    with pytest.raises(ValueError, match="ssd300_vgg16"):
        ssd_zoo.build("ssd300_vgg")
    with pytest.raises(ValueError, match="already registered"):
        ssd_zoo.register_model(get_builder("ssd300_vgg16"))


def test_builder_keywords_reach_the_model() -> None:
    model = ssd_zoo.build("ssd300_vgg16", num_classes=3, score_thresh=0.3, nms_thresh=0.5, detections_per_img=7,
                          topk_candidates=50, iou_thresh=0.6, neg_pos_ratio=2)
    assert (model.num_classes, model.score_thresh, model.nms_thresh, model.detections_per_img) == (3, 0.3, 0.5, 7)
    assert (model.topk_candidates, model.iou_thresh, model.neg_pos_ratio) == (50, 0.6, 2)
    assert model.head.classification[0].out_channels == 4 * 3


def test_checkpoint_round_trip(tmp_path, ssd300) -> None:
    path = tmp_path / "ssd.pth"
    torch.save(ssd300.state_dict(), path)
    loaded = ssd_zoo.build("ssd300_vgg16", num_classes=4, weights=str(path))
    for key, value in ssd300.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_dense_predictions_are_what_forward_post_processes() -> None:
    from ssd_zoo.ops.postprocess import select_detections

    torch.manual_seed(0)
    model = ssd_zoo.build("ssd300_vgg16", num_classes=4).eval()
    with torch.no_grad():
        for conv in model.head.classification:
            conv.weight.mul_(0.05)
    images = [torch.rand(3, 200, 260), torch.rand(3, 300, 300)]
    with torch.no_grad():
        dense = model.dense_predictions(images)
        expected = model(images)
        batch = torch.stack([torch.nn.functional.interpolate(im[None], size=(300, 300), mode="bilinear")[0]
                             for im in images])
        same = model.dense_predictions(batch)  # a tensor at the input size is used as it is
    assert dense["scores"].shape == (2, 8732, 4) and dense["boxes"].shape == (2, 8732, 4)
    assert dense["default_boxes"].shape == (8732, 4)
    torch.testing.assert_close(dense["scores"].sum(-1), torch.ones(2, 8732))
    torch.testing.assert_close(same["scores"], dense["scores"])
    assert dense["boxes"].min() < 0 or dense["boxes"].max() > 300, "boxes are not clipped"
    detections = select_detections(dense["scores"], dense["boxes"], (300, 300), **model.thresholds)
    for (h, w), found, e in zip([(200, 260), (300, 300)], detections, expected):
        scale = torch.tensor([w / 300, h / 300] * 2)
        assert torch.equal(found["labels"], e["labels"]) and len(e["labels"]) > 0
        torch.testing.assert_close(found["boxes"] * scale, e["boxes"])
        torch.testing.assert_close(found["scores"], e["scores"])


def test_the_generic_ssd_builder_takes_any_input_size() -> None:
    pytest.importorskip("timm")
    same = ssd_zoo.build("ssd", backbone="resnet10t", input_size=300)
    assert same.default_boxes.spec == ssd_zoo.build("ssd300", backbone="resnet10t").default_boxes.spec
    small = ssd_zoo.build("ssd", backbone="resnet10t", input_size=128, anchors="coco",
                          box_sizes=[14, 34, 52, 84, 109, 134], aspect_ratios=[[2, 3]] * 4 + [[2]])
    assert small.input_size == 128 and small.default_boxes.spec.sizes == (14, 34, 52, 84, 109, 134)
    with torch.no_grad():
        dense = small.eval().dense_predictions([torch.rand(3, 100, 140)])
    assert dense["scores"].shape[1] == 6 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2) + 4 * 1
    with pytest.raises(ValueError, match="SSDLite has its own default boxes"):
        ssd_zoo.build("ssdlite320", backbone="mobilenetv3_small_050", box_sizes=[1, 2, 3])
