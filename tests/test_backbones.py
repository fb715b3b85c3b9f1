"""timm backbones: the generic path on many families, extra blocks, SSDLite, backbone weights and errors.

Only small timm models (and timm's own ``test_*`` ones), random weights, no network.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn
from torchvision.models import mobilenet_v3_large
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.models.detection.image_list import ImageList

import ssd_zoo
from ssd_zoo.models.ssdlite import SSDLiteHead, ssdlite_spec
from ssd_zoo.models.timm_backbone import TimmBackbone, create_features, shrink_geometry
from ssd_zoo.ops.default_boxes import default_boxes, grid_sides, preset

GRID_300 = [38, 19, 10, 5, 3, 1]
GRID_512 = [64, 32, 16, 8, 4, 2, 1]

# Families beyond the named ResNet / MobileNet / EfficientNet / ConvNeXt variants, at their smallest.
FAMILIES = [
    "regnetx_002",           # RegNet
    "ghostnet_050",          # GhostNet
    "mobilevit_xxs",         # MobileViT: convolutions + transformer blocks
    "lcnet_050",             # PP-LCNet
    "test_byobnet",          # timm's "bring your own blocks" nets
    "test_nfnet",            # NFNet: normaliser-free, so extra blocks without BatchNorm
    "test_mambaout",         # MambaOut: maps come channels-last (NHWC)
    "test_convnext",         # ConvNeXt: 37/18/9 at 300, resampled onto 38/19/10
    "resnet10t",             # ResNet, deep stem
    "mobilenetv3_small_050",  # MobileNetV3
]


def _feature_shapes(model: ssd_zoo.SSD) -> list[tuple[int, int, int]]:
    with torch.no_grad():
        maps = model.backbone.eval()(torch.zeros(1, 3, model.input_size, model.input_size))
    return [tuple(m.shape[1:]) for m in maps]


@pytest.mark.parametrize("name", FAMILIES)
def test_generic_ssd300_on_timm_family(name: str) -> None:
    torch.manual_seed(0)
    model = ssd_zoo.build("ssd300", backbone=name, num_classes=3)
    shapes = _feature_shapes(model)
    assert [s[1:] for s in shapes] == [(g, g) for g in GRID_300]
    assert [s[0] for s in shapes] == model.backbone.out_channels
    assert model.backbone.out_channels[:3] == [
        timm.create_model(name, features_only=True).feature_info.channels()[i] for i in model.backbone.levels
    ]
    model.train()
    targets = [{"boxes": torch.tensor([[2.0, 3.0, 30.0, 20.0]]), "labels": torch.tensor([2])}] * 2
    losses = model([torch.rand(3, 32, 48)] * 2, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    first = next(model.backbone.body.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet10t", "test_convnext"])
def test_generic_ssd512_grid(name: str) -> None:
    model = ssd_zoo.build("ssd512", backbone=name)
    assert [s[1:] for s in _feature_shapes(model)] == [(g, g) for g in GRID_512]
    with torch.no_grad():
        assert model.eval()([torch.rand(3, 32, 32)])[0]["boxes"].shape[1] == 4
    assert model.default_boxes.spec == preset(512, "voc")


def test_grid_comes_from_the_default_boxes() -> None:
    assert grid_sides(preset(300, "voc")) == GRID_300
    assert grid_sides(preset(512, "coco")) == GRID_512
    assert grid_sides(ssdlite_spec(320)) == [20, 10, 5, 3, 2, 1]


@pytest.mark.parametrize(
    ("size", "target", "expected"), [(10, 5, (2, 1)), (5, 3, (2, 1)), (3, 1, (1, 0)), (2, 1, (2, 1)), (1, 1, (2, 1))]
)
def test_shrink_geometry(size: int, target: int, expected: tuple[int, int]) -> None:
    assert shrink_geometry(size, target) == expected
    stride, padding = expected
    assert nn.Conv2d(1, 1, 3, stride, padding)(torch.zeros(1, 1, size, size)).shape[-1] == target


def test_shrink_geometry_impossible_raises() -> None:
    with pytest.raises(ValueError, match="5x5 map to 5x5"):
        shrink_geometry(5, 5)


def test_extra_blocks_use_batch_norm_only_where_the_backbone_does() -> None:
    with_bn = TimmBackbone(create_features("resnet10t"), input_size=300, grid=GRID_300)
    without = TimmBackbone(create_features("test_nfnet"), input_size=300, grid=GRID_300)
    assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.extras.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.extras.modules())
    assert all(m.bias is not None for m in without.extras.modules() if isinstance(m, nn.Conv2d))
    assert with_bn.resample == [None, None, None]


def test_maps_off_the_grid_are_resampled() -> None:
    backbone = TimmBackbone(create_features("test_convnext"), input_size=300, grid=GRID_300)
    assert backbone.resample == [(38, 38), (19, 19), (10, 10)]  # the body gives 37/18/9 (floor division)


def test_maps_far_off_the_grid_raise() -> None:
    with pytest.raises(ValueError, match=r"stride-8 map is 75x75, expected about 38x38"):
        TimmBackbone._resample_targets([(75, 75)], [38], [8], "some_net", 300)


def test_mean_std_come_from_the_pretrained_config() -> None:
    mobilevit = ssd_zoo.build("ssd300", backbone="mobilevit_xxs")  # timm normalises it with mean 0, std 1
    assert mobilevit.transform.mean.flatten().tolist() == [0.0, 0.0, 0.0]
    assert mobilevit.transform.std.flatten().tolist() == [1.0, 1.0, 1.0]
    resnet = ssd_zoo.build("ssd300", backbone="resnet10t")
    torch.testing.assert_close(resnet.transform.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(resnet.transform.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))


# SSDLite -------------------------------------------------------------------------------------------------


def test_ssdlite_default_boxes_match_torchvision() -> None:
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).eval()
    images = torch.zeros(1, 3, 320, 320)
    with torch.no_grad():
        maps = list(tv.backbone(images).values())
    expected = tv.anchor_generator(ImageList(images, [(320, 320)]), maps)[0]
    grid = [tuple(m.shape[-2:]) for m in maps]
    assert grid == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    ours = default_boxes(ssdlite_spec(320), grid, (320, 320))
    assert ours.shape == (3234, 4)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def _convs(module: nn.Module, channels: dict[int, int] | None = None) -> list[tuple]:
    """Every Conv2d in ``module``, in order: (in, out, kernel, stride, padding, groups, bias?), channel
    counts renamed by ``channels`` (e.g. ``{960: 480}``)."""
    rename = (channels or {}).get
    return [(rename(m.in_channels, m.in_channels), rename(m.out_channels, m.out_channels), m.kernel_size, m.stride,
             m.padding, rename(m.groups, m.groups), m.bias is not None)
            for m in module.modules() if isinstance(m, nn.Conv2d)]


def _layer_types(module: nn.Module) -> list[str]:
    """The BatchNorms (timm's BatchNormAct2d counts as one, its activation follows) and activations in
    ``module``, in order."""
    return ["BatchNorm2d" if isinstance(m, nn.BatchNorm2d) else type(m).__name__ for m in module.modules()
            if isinstance(m, nn.BatchNorm2d) or type(m).__module__ == nn.ReLU.__module__]


def test_ssdlite320_mobilenetv3_large_matches_torchvision_layout() -> None:
    """torchvision's ssdlite320_mobilenet_v3_large, conv by conv and activation by activation: the body (timm's
    MobileNetV3-Large = torchvision's), the taps, the extras and the head. One difference is on purpose:
    without backbone weights torchvision halves the last stage (``reduced_tail``: 480 channels where ours has
    960), with ImageNet weights it does not; so torchvision's 480 is compared with our 960.

    Not compared: BatchNorm hyper-parameters (torchvision's SSDLite uses eps 0.001 and momentum 0.03, ours
    PyTorch's defaults)."""
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).eval()
    ours = ssd_zoo.build("ssdlite320_mobilenetv3_large", num_classes=3)
    full_tail = mobilenet_v3_large(weights=None).features  # torchvision's MobileNetV3-Large, reduced_tail=False
    assert _convs(ours.backbone.body) == _convs(full_tail)
    assert _layer_types(ours.backbone.body) == _layer_types(full_tail)
    with torch.no_grad():
        expected = [tuple(m.shape[1:]) for m in tv.backbone(torch.zeros(1, 3, 320, 320)).values()]
    reduced = {full_tail[-1].out_channels: expected[1][0]}  # {960: 480}
    assert reduced == {960: 480}
    assert [s[1:] for s in expected] == [(g, g) for g in [20, 10, 5, 3, 2, 1]]
    assert [(reduced.get(c, c), h, w) for c, h, w in _feature_shapes(ours)] == expected
    assert _convs(ours.backbone.extras, reduced) == _convs(tv.backbone.extra)
    assert _layer_types(ours.backbone.extras) == _layer_types(tv.backbone.extra)
    assert isinstance(ours.head, SSDLiteHead)
    heads = (("classification", tv.head.classification_head), ("regression", tv.head.regression_head))
    for name, tv_head in heads:
        for level, (mine, theirs) in enumerate(zip(getattr(ours.head, name), tv_head.module_list, strict=True)):
            assert _convs(mine, reduced) == _convs(theirs), f"{name} head, level {level}"
            assert _layer_types(mine) == _layer_types(theirs), f"{name} head, level {level}"


def test_ssdlite_head_is_depthwise_separable_and_shaped() -> None:
    head = SSDLiteHead([16, 8], [6, 4], num_classes=5)
    for block in [*head.classification, *head.regression]:
        assert block.depthwise.groups == block.depthwise.in_channels
        assert isinstance(block.bn, nn.BatchNorm2d) and isinstance(block.act, nn.ReLU6)
        assert block.pointwise.kernel_size == (1, 1)
    cls_logits, box_regression = head.eval()([torch.rand(2, 16, 4, 4), torch.rand(2, 8, 2, 2)])
    anchors = 4 * 4 * 6 + 2 * 2 * 4
    assert cls_logits.shape == (2, anchors, 5) and box_regression.shape == (2, anchors, 4)
    with pytest.raises(ValueError, match="2 feature maps but default boxes for 1 levels"):
        SSDLiteHead([16, 8], [6], num_classes=5)


def test_ssdlite_rejects_ssd_anchor_presets() -> None:
    with pytest.raises(ValueError, match="SSDLite has its own default boxes"):
        ssd_zoo.build("ssdlite320", backbone="resnet10t", anchors="coco")


# Errors --------------------------------------------------------------------------------------------------


def test_unknown_timm_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match=r"'resnet_50': not a timm model.*resnet50"):
        ssd_zoo.build("ssd300", backbone="resnet_50")


def test_backbone_without_strides_8_16_32_raises() -> None:
    with pytest.raises(ValueError, match=r"'test_vit'.*strides \(8, 16, 32\).*\[16, 16, 16\]"):
        ssd_zoo.build("ssd300", backbone="test_vit")


def test_backbone_that_cannot_run_at_the_input_size_raises() -> None:
    with pytest.raises(ValueError, match=r"'test_maxvit': does not run on a 300x300 input"):
        ssd_zoo.build("ssd300", backbone="test_maxvit")


def test_backbone_without_features_only_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_features(name: str, **kwargs: object) -> nn.Module:
        raise RuntimeError(f"features_only not implemented for {name}")

    monkeypatch.setattr(timm, "create_model", no_features)
    with pytest.raises(ValueError, match=r"'resnet18': timm cannot build it with features_only=True.*not implemented"):
        create_features("resnet18")


def test_extra_channels_too_few_raises() -> None:
    with pytest.raises(ValueError, match=r"extra_channels: expected at least 3 entries"):
        ssd_zoo.build("ssd300", backbone="resnet10t", extra_channels=(256,))


# Backbone weights ----------------------------------------------------------------------------------------


def test_pretrained_backbone_goes_through_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(timm.models._builder, "load_pretrained", lambda model, **kw: calls.append(kw))
    ssd_zoo.build("ssd300", backbone="resnet10t", pretrained_backbone=True)
    assert len(calls) == 1


def test_pretrained_backbone_offline_says_how_to_pass_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    with pytest.raises(RuntimeError, match=r"'resnet10t'.*couldn't connect.*backbone_weights=") as info:
        ssd_zoo.build("ssd300", backbone="resnet10t", pretrained_backbone=True)
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("suffix", ["pth", "safetensors"])
def test_backbone_weights_from_a_local_file(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    source = timm.create_model("resnet10t").state_dict()
    path = tmp_path / f"resnet10t.{suffix}"
    if suffix == "pth":
        torch.save(source, path)
    else:
        from safetensors.torch import save_file

        save_file(source, str(path))
    model = ssd_zoo.build("ssd300", backbone="resnet10t", backbone_weights=path)
    loaded = model.backbone.body.state_dict()
    shared = [k for k in loaded if k in source]
    assert len(shared) == len(loaded)  # every backbone tensor came from the file (the classifier is dropped)
    for key in shared:
        torch.testing.assert_close(loaded[key], source[key], msg=key)


def test_backbone_weights_missing_or_wrong_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        ssd_zoo.build("ssd300", backbone="resnet10t", backbone_weights=tmp_path / "nowhere.pth")
    wrong = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), wrong)
    with pytest.raises(RuntimeError, match=r"'resnet10t': could not load backbone_weights=.*resnet18.pth"):
        ssd_zoo.build("ssd300", backbone="resnet10t", backbone_weights=wrong)


def test_ssd_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ssd_zoo.build("ssdlite320", backbone="mobilenetv3_small_050", num_classes=4)
    torch.save(source.state_dict(), tmp_path / "ssdlite.pth")
    torch.manual_seed(1)
    loaded = ssd_zoo.build("ssdlite320", backbone="mobilenetv3_small_050", num_classes=4, weights=tmp_path / "ssdlite.pth")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)
