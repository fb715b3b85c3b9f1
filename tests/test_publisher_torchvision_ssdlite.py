"""torchvision's SSDLite320-MobileNetV3-Large in ssd_zoo: same weights, same dense predictions and detections.

torchvision's own model (random weights, nothing downloaded) is the reference: its state dict is loaded into
ssd_zoo's ``ssdlite320_mobilenet_v3_large`` (converted from torchvision's layout), and both run on the photos
in assets/.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from helpers import at_the_cut, load_samples
from torch import Tensor
from torchvision.models import WeightsEnum
from torchvision.models.detection import ssdlite320_mobilenet_v3_large as torchvision_ssdlite

import ssd_zoo
from ssd_zoo.models.record import RECORD_STATE_KEY, encode_record, split_record
from ssd_zoo.finetune.surgery import HeadSurgeryWarning
from ssd_zoo.weights import convert
from ssd_zoo.ops.postprocess import select_detections
from ssd_zoo.weights.publishers import tv as publisher
from ssd_zoo.weights.published import ssd_weights

MODEL = "ssdlite320_mobilenet_v3_large"


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """(torchvision's SSDLite, ssd_zoo's with its weights), eval mode.

    With torchvision's initialisation (no ImageNet backbone: normal, std 0.03) and fresh BatchNorm statistics the
    signal fades and every location scores the same whatever the photo. The BatchNorm statistics are therefore
    those of the photos (one pass in training mode), so that the photos drive the predictions and eps matters;
    the regression head is scaled so that boxes stay near their default boxes."""
    torch.manual_seed(0)
    tv = torchvision_ssdlite(weights=None, weights_backbone=None)
    with torch.no_grad():
        norms = [m for m in tv.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for module in norms:
            module.momentum = None  # a cumulative average: after one pass, the statistics of that batch
        batch, _ = tv.transform(load_samples())
        tv.train().head(list(tv.backbone(batch.tensors).values()))
        for module in norms:
            module.momentum = 0.03
        for block in tv.head.regression_head.module_list:
            block[1].weight.mul_(0.01)
    ours = ssd_zoo.build(MODEL)
    ours.load_state_dict(convert.to_ssd_zoo(tv.state_dict(), "torchvision-ssdlite"))
    return tv.eval(), ours.eval()


def torchvision_dense(tv: torch.nn.Module, images: list[Tensor]) -> tuple[Tensor, Tensor]:
    """torchvision's own steps: transform, backbone, head, its anchors, softmax and its box coder ->
    ``(scores [B, A, C], boxes [B, A, 4])`` in pixels of the 320x320 input."""
    batch, _ = tv.transform(images)
    features = list(tv.backbone(batch.tensors).values())
    head = tv.head(features)
    anchors = tv.anchor_generator(batch, features)
    boxes = torch.stack([tv.box_coder.decode_single(reg, a) for reg, a in zip(head["bbox_regression"], anchors)])
    return torch.softmax(head["cls_logits"], dim=-1), boxes


def test_the_architecture_is_torchvisions(pair) -> None:
    tv, ours = pair
    assert ours.input_size == 320 and ours.default_boxes.spec.boxes_per_location == [6] * 6
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tv.parameters()) == 3440060
    norms = [m for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all((m.eps, m.momentum) == (0.001, 0.03) for m in norms)
    assert ours.thresholds == {"score_thresh": 0.001, "nms_thresh": 0.55, "topk_candidates": 300,
                               "detections_per_img": 300, "clip_before_nms": True}


def test_dense_predictions_match_torchvision(pair, sample_images) -> None:
    tv, ours = pair
    with torch.no_grad():
        scores, boxes = torchvision_dense(tv, sample_images)
        found = ours.dense_predictions(sample_images)
    assert found["scores"].shape == scores.shape == (3, 3234, 91)
    torch.testing.assert_close(found["scores"], scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(found["boxes"], boxes, rtol=1e-4, atol=1e-4)


def agreeing_pairs(a: dict[str, Tensor], b: dict[str, Tensor], box_atol: float = 1e-2, rtol: float = 1e-4) -> Tensor:
    """``[len(a), len(b)]`` bool: detection i of ``a`` and j of ``b`` are the same one (same label, box within
    ``box_atol`` pixels of the photo, score within ``rtol``)."""
    same_label = a["labels"][:, None] == b["labels"][None, :]
    close_boxes = (a["boxes"][:, None] - b["boxes"][None, :]).abs().amax(-1) <= box_atol
    close_scores = (a["scores"][:, None] - b["scores"][None, :]).abs() <= rtol * a["scores"][:, None]
    return same_label & close_boxes & close_scores


def rows(detections: dict[str, Tensor], keep: Tensor) -> list[tuple[float, ...]]:
    """The detections ``keep`` selects as sorted ``(score, label, x1, y1, x2, y2)`` rows."""
    table = torch.cat([detections["scores"][:, None], detections["labels"][:, None].float(), detections["boxes"]], 1)
    return sorted(map(tuple, table[keep].tolist()))


def test_selection_on_torchvision_outputs_is_torchvisions(pair, sample_images) -> None:
    """ssd_zoo's thresholds, per-class top-k and NMS on torchvision's own dense outputs: the same detections
    (the same scores in the same order; detections of exactly equal score may come in another order)."""
    tv, ours = pair
    with torch.no_grad():
        batch, _ = tv.transform(sample_images)
        features = list(tv.backbone(batch.tensors).values())
        expected = tv.postprocess_detections(tv.head(features), tv.anchor_generator(batch, features), batch.image_sizes)
        found = select_detections(*torchvision_dense(tv, sample_images), (320, 320), **ours.thresholds)
    for i, (e, f) in enumerate(zip(expected, found)):
        assert len(e["scores"]) == 300, f"image {i}"
        assert torch.equal(f["scores"], e["scores"]) and torch.equal(f["labels"], e["labels"]), f"image {i}"
        kept = ~at_the_cut(e["scores"], ours.detections_per_img)  # which of the last tied ones made it: arbitrary
        assert rows(f, kept) == rows(e, kept), f"image {i}"


def test_detections_match_torchvision(pair, sample_images) -> None:
    tv, ours = pair
    images = sample_images
    with torch.no_grad():
        expected, found = tv(images), ours(images)
    for i, (e, f) in enumerate(zip(expected, found)):
        assert len(e["scores"]) == len(f["scores"]) == 300, f"image {i}"
        torch.testing.assert_close(f["scores"], e["scores"], rtol=1e-4, atol=0, msg=lambda m: f"image {i}: {m}")
        pairs = agreeing_pairs(e, f)
        lonely = (pairs.sum(1) != 1) & ~at_the_cut(e["scores"], ours.detections_per_img)
        assert not lonely.any(), f"image {i}: {int(lonely.sum())} of torchvision's detections have no partner"


def test_round_trip_to_torchvision_is_exact(pair) -> None:
    tv, ours = pair
    back = convert.from_ssd_zoo(ours.state_dict(), "torchvision-ssdlite")
    assert back.keys() == tv.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in tv.state_dict().items())
    fresh = torchvision_ssdlite(weights=None, weights_backbone=None)
    fresh.load_state_dict(back, strict=True)
    # A record of other default boxes (e.g. fine-tuned with its own): torchvision would decode against its own.
    state = ours.state_dict()
    record = split_record(state)[1]
    other = dict(record["default_boxes"], sizes=[s * 0.9 for s in record["default_boxes"]["sizes"]])
    state[RECORD_STATE_KEY] = encode_record({**record, "default_boxes": other})
    for convert_it in (lambda: convert.from_ssd_zoo(state, "torchvision-ssdlite", where="tuned.pth"),
                       lambda: publisher.to_torchvision_ssdlite(state, where="tuned.pth")):
        with pytest.raises(ValueError, match=r"tuned.pth was trained with default boxes .* but torchvision's "
                                             r"ssdlite320_mobilenet_v3_large decodes with its own"):
            convert_it()


def test_load_recognises_a_torchvision_file(pair, tmp_path: Path) -> None:
    tv, _ = pair
    path = tmp_path / "ssdlite.pth"
    torch.save({"model": tv.state_dict()}, path)  # as torchvision's references/detection train.py saves it
    model = ssd_zoo.load(path)
    assert model.builder["name"] == MODEL and model.num_classes == 91
    assert model.categories[1] == "person" and model.categories[12] == "N/A"  # torchvision's COCO ids
    assert all(torch.equal(model.state_dict()[k], v) for k, v in convert.to_ssd_zoo(tv.state_dict()).items())


def test_named_entry_metadata_and_loading(pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = publisher.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1
    assert entry.url == "https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth"
    assert entry.meta["sha256"] == "a79551df" and entry.meta["metrics"] == {"COCO-val2017": {"box_map": 21.3}}
    assert (entry.meta["layout"], entry.meta["num_classes"], entry.meta["mean"]) == ("torchvision-ssdlite", 91, (0.5,) * 3)
    assert f"{MODEL}.COCO_V1" in ssd_zoo.list_weights()
    # The same entry, served from a file URL as a user's own mirror would: converted on load.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    tv, _ = pair
    stored = tmp_path / "ssdlite.pth"
    torch.save(tv.state_dict(), stored)
    prefix = hashlib.sha256(stored.read_bytes()).hexdigest()[:8]
    mirror = ssd_weights(stored.as_uri(), sha256=prefix, file_name=f"ssdlite-{prefix}.pth", model=MODEL,
                         input_size=320, layout="torchvision-ssdlite", num_classes=91, anchors=None,
                         categories=entry.meta["categories"], dataset="test", metrics={}, metrics_source="-",
                         recipe="-", mean=(0.5,) * 3, std=(0.5,) * 3)
    model = ssd_zoo.build(MODEL, weights=WeightsEnum("Mirror", {"COCO": mirror}).COCO)
    assert model.categories == entry.meta["categories"]
    assert torch.equal(model.state_dict()["head.regression.5.pointwise.weight"],
                       tv.state_dict()["head.regression_head.module_list.5.1.weight"])


def test_another_class_count_is_read_from_the_head(tmp_path: Path) -> None:
    tv = torchvision_ssdlite(weights=None, weights_backbone=None, num_classes=21)
    path = tmp_path / "voc_ssdlite.pth"
    torch.save(tv.state_dict(), path)
    model = ssd_zoo.load(path)
    assert model.num_classes == 21 and model.categories[15] == "person"  # VOC's names for 21 classes
    with pytest.warns(HeadSurgeryWarning, match="class predictors"):  # another class count: head surgery (issue 12)
        other = ssd_zoo.build(MODEL, weights=path, num_classes=91)
    assert other.num_classes == 91
