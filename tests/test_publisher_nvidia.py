"""NVIDIA DeepLearningExamples' SSD300 v1.1 (ResNet-50) in ssd_zoo.

The reference is a plain-ops re-implementation, written from reading their ``ssd/model.py`` (``ResNet``,
``SSD300.forward``, ``bbox_view``) and ``ssd/utils.py`` (``DefaultBoxes``, ``dboxes300_coco``,
``Encoder.scale_back_batch``), run on a state dict in exactly their key layout: ``{"model": state_dict}``
with DDP's ``module.`` prefix, keys ``feature_extractor.feature_extractor.N.*``, ``additional_blocks.N.*``,
``loc.N.*``, ``conf.N.*``.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import load_samples
from torch import Tensor, nn
from torchvision.models.resnet import resnet50

import ssd_zoo
from ssd_zoo.weights import convert
from ssd_zoo.cli import main

MODEL = "nvidia_ssd300_resnet50"
# ssd/utils.py dboxes300_coco and ssd/model.py as at NVIDIA/DeepLearningExamples 04099020 / 0b3f770b.
BOXES = [4, 6, 6, 6, 4, 4]
MAPS = [38, 19, 10, 5, 3, 1]
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


def their_state_dict(num_classes: int = 81, seed: int = 0) -> dict[str, Tensor]:
    """Their SSD300's state dict with random weights and BatchNorm statistics taken from the photos (one pass in
    training mode), so that the photos drive the predictions. Modules as in their model.py."""
    torch.manual_seed(seed)
    net = nn.Module()
    net.feature_extractor = nn.Module()
    net.feature_extractor.feature_extractor = nn.Sequential(*list(resnet50(weights=None).children())[:7])
    block = net.feature_extractor.feature_extractor[-1][0]
    block.conv1.stride, block.conv2.stride, block.downsample[0].stride = (1, 1), (1, 1), (1, 1)
    blocks = []
    for i, (cin, mid, cout) in enumerate([(1024, 256, 512), (512, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)]):
        last = nn.Conv2d(mid, cout, 3, padding=1, stride=2, bias=False) if i < 3 else nn.Conv2d(mid, cout, 3, bias=False)
        blocks.append(nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(), last,
                                    nn.BatchNorm2d(cout), nn.ReLU()))
    net.additional_blocks = nn.ModuleList(blocks)
    channels = [1024, 512, 512, 256, 256, 256]
    net.loc = nn.ModuleList(nn.Conv2d(c, k * 4, 3, padding=1) for c, k in zip(channels, BOXES))
    net.conf = nn.ModuleList(nn.Conv2d(c, k * num_classes, 3, padding=1) for c, k in zip(channels, BOXES))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None  # cumulative average: after one pass, that batch's statistics
        x = net.feature_extractor.feature_extractor(preprocess(load_samples()))
        for block in net.additional_blocks:
            x = block(x)
        for conv in net.loc:
            conv.weight.mul_(0.005)  # boxes near their default boxes (and small float32 rounding, as below)
        for conv in net.conf:
            # logits of a few units, not hundreds: float32's ~1e-7 relative rounding, through ResNet-50 in two
            # implementations, then stays below 1e-4 in the probabilities (in float64 both agree to ~1e-12)
            conv.weight.mul_(0.02)
    return net.state_dict()


def preprocess(images: list[Tensor]) -> Tensor:
    """``[B, 3, 300, 300]`` in [0, 1]: the photos resized (what both sides are given)."""
    return torch.stack([F.interpolate(i[None], size=(300, 300), mode="bilinear", align_corners=False)[0] for i in images])


def their_forward(sd: dict[str, Tensor], x: Tensor, num_classes: int = 81) -> tuple[Tensor, Tensor]:
    """SSD300.forward on the state dict: ``(locs [B, 4, 8732], confs [B, C, 8732])``."""
    def bn(x: Tensor, p: str) -> Tensor:
        return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            False, 0.0, 1e-5)

    def bottleneck(x: Tensor, p: str, stride: int) -> Tensor:
        out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
        out = F.relu(bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
        out = bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
        if f"{p}.downsample.0.weight" in sd:
            x = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
        return F.relu(out + x)

    fe = "feature_extractor.feature_extractor"
    x = F.relu(bn(F.conv2d(x, sd[f"{fe}.0.weight"], stride=2, padding=3), f"{fe}.1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for child, blocks, stride in ((4, 3, 1), (5, 4, 2), (6, 6, 1)):  # layer1..3; layer3's stride set to 1
        for b in range(blocks):
            x = bottleneck(x, f"{fe}.{child}.{b}", stride if b == 0 else 1)
    feed = [x]
    for i in range(5):
        p = f"additional_blocks.{i}"
        x = F.relu(bn(F.conv2d(x, sd[f"{p}.0.weight"]), f"{p}.1"))
        x = F.relu(bn(F.conv2d(x, sd[f"{p}.3.weight"], stride=2 if i < 3 else 1, padding=1 if i < 3 else 0), f"{p}.4"))
        feed.append(x)
    locs = [F.conv2d(f, sd[f"loc.{i}.weight"], sd[f"loc.{i}.bias"], padding=1).reshape(len(f), 4, -1) for i, f in enumerate(feed)]
    confs = [F.conv2d(f, sd[f"conf.{i}.weight"], sd[f"conf.{i}.bias"], padding=1).reshape(len(f), num_classes, -1)
             for i, f in enumerate(feed)]
    return torch.cat(locs, 2), torch.cat(confs, 2)


def their_default_boxes() -> Tensor:
    """DefaultBoxes(300, [38, 19, 10, 5, 3, 1], steps, scales 21..315, ratios): ``[8732, 4]`` xywh, clamped."""
    steps, scales, ratios = [8, 16, 32, 64, 100, 300], [21, 45, 99, 153, 207, 261, 315], [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    boxes = []
    for idx, sfeat in enumerate(MAPS):
        fk = 300 / steps[idx]
        sk1, sk2 = scales[idx] / 300, scales[idx + 1] / 300
        sizes = [(sk1, sk1), (math.sqrt(sk1 * sk2),) * 2]
        for alpha in ratios[idx]:
            w, h = sk1 * math.sqrt(alpha), sk1 / math.sqrt(alpha)
            sizes += [(w, h), (h, w)]
        for w, h in sizes:
            for i, j in itertools.product(range(sfeat), repeat=2):
                boxes.append(((j + 0.5) / fk, (i + 0.5) / fk, w, h))
    return torch.tensor(boxes, dtype=torch.float).clamp(0, 1)


def their_decode(locs: Tensor, confs: Tensor, dboxes: Tensor) -> tuple[Tensor, Tensor]:
    """Encoder.scale_back_batch: ``(boxes [B, 8732, 4] ltrb relative, probabilities [B, 8732, C])``."""
    locs, confs = locs.permute(0, 2, 1), confs.permute(0, 2, 1)
    xy = 0.1 * locs[..., :2] * dboxes[:, 2:] + dboxes[:, :2]
    wh = (0.2 * locs[..., 2:]).exp() * dboxes[:, 2:]
    return torch.cat([xy - 0.5 * wh, xy + 0.5 * wh], -1), F.softmax(confs, dim=-1)


def their_order() -> Tensor:
    """For each of ssd_zoo's default boxes (level, row, column, box), the index of the same one in theirs
    (level, box, row, column)."""
    order, offset = [], 0
    for f, k in zip(MAPS, BOXES):
        order += [offset + b * f * f + i * f + j for i in range(f) for j in range(f) for b in range(k)]
        offset += f * f * k
    return torch.tensor(order)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Tensor]]:
    """Their checkpoint as their training saves it under DDP: ``{"model": {"module.<key>": tensor}}``."""
    state = their_state_dict()
    path = tmp_path_factory.mktemp("nvidia") / "nvidia_ssdpyt_test.pt"
    torch.save({"epoch": 65, "iteration": 1, "model": {f"module.{k}": v for k, v in state.items()}}, path)
    return path, state


def test_dense_predictions_match_their_forward(published, sample_images) -> None:
    path, state = published
    model = ssd_zoo.load(path).eval()
    assert model.builder["name"] == MODEL and model.num_classes == 81
    x = preprocess(sample_images)
    with torch.no_grad():
        found = model.dense_predictions(x)
        boxes, scores = their_decode(*their_forward(state, (x - MEAN[:, None, None]) / STD[:, None, None]),
                                     their_default_boxes())
    order = their_order()
    dboxes = their_default_boxes()[order]
    torch.testing.assert_close(found["default_boxes"],
                               torch.cat([dboxes[:, :2] - dboxes[:, 2:] / 2, dboxes[:, :2] + dboxes[:, 2:] / 2], 1) * 300,
                               rtol=0, atol=1e-4)
    assert scores.max() > 0.05 and scores[..., 1:].std() > 1e-3  # the photos drive the predictions
    torch.testing.assert_close(found["scores"], scores[:, order], rtol=1e-4, atol=1e-6)
    # In their units (fractions of the image), to 1e-4: pixels to 1e-4 would ask float32 for 7 digits at 300,
    # which another thread count's summation order already misses.
    torch.testing.assert_close(found["boxes"] / 300, boxes[:, order], rtol=0, atol=1e-4)


def test_the_model_follows_their_settings(published) -> None:
    model = ssd_zoo.load(published[0])
    assert model.thresholds == {"score_thresh": 0.05, "nms_thresh": 0.5, "topk_candidates": 200, "detections_per_img": 200,
                                "clip_before_nms": False}
    assert model.categories[1] == "person" and model.categories[80] == "toothbrush" and "N/A" not in model.categories
    assert model.transform.mean.flatten().tolist() == pytest.approx(MEAN.tolist())
    entry = ssd_zoo.get_weights(f"{MODEL}.DEFAULT")
    assert entry.url.endswith("nvidia_ssdpyt_amp_200703.pt") and entry.meta["layout"] == "nvidia"
    assert entry.meta["metrics"] == {"COCO-val2017": {"box_map": 26.5}}


def test_round_trip_is_exact_and_the_command_line_converts(published, tmp_path: Path) -> None:
    path, state = published
    ours = convert.to_ssd_zoo(convert.unwrap(torch.load(path, weights_only=True)))
    back = convert.from_ssd_zoo(ours, "nvidia")
    assert back.keys() == state.keys() and all(torch.equal(back[k], v) for k, v in state.items())
    assert main(["convert", str(path), str(tmp_path / "zoo.pth")]) == 0
    assert main(["convert", str(tmp_path / "zoo.pth"), str(tmp_path / "nvidia.pth"), "--to", "nvidia"]) == 0
    again = torch.load(tmp_path / "nvidia.pth", weights_only=True)
    assert again.keys() == state.keys() and all(torch.equal(again[k], v) for k, v in state.items())


def test_bad_files_are_named(published, tmp_path: Path) -> None:
    path, state = published
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(RuntimeError, match="truncated.pt.* is truncated or corrupt"):
        ssd_zoo.load(truncated)
    resnet18 = dict(state, **{"loc.0.weight": torch.zeros(16, 256, 3, 3)})  # their ResNet-18 variant's first map
    torch.save({"model": resnet18}, tmp_path / "r18.pt")
    with pytest.raises(ValueError, match="expected the ResNet-50 SSD300.*loc.0.weight \\(16, 256, 3, 3\\)"):
        ssd_zoo.load(tmp_path / "r18.pt")
    torch.save({"model": {"net.conv.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="known SSD layouts.*nvidia.*first keys: \\['net.conv.weight'\\]"):
        ssd_zoo.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit SSD.*missing keys"):  # an nvidia file for the VGG16 SSD
        ssd_zoo.build("ssd300_vgg16", weights=path)
