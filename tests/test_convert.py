"""Converters between ssd_zoo, torchvision and ssd.pytorch layouts: exact round trips, and an ssd.pytorch
network (assembled here from plain torch ops on its own keys) gives the same outputs once converted."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from helpers import run_in_process

import ssd_zoo
from ssd_zoo.models.record import split_record
from ssd_zoo.weights import convert
from ssd_zoo.cli import main
from ssd_zoo.weights.resolve import load_state_dict

# ssd.pytorch's SSD300 as data: its `vgg` cfg ("M" pool, "C" ceil-mode pool), extras (out, kernel, stride,
# padding) from 1024 channels, and default boxes per location of each source.
VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]
EXTRAS = [(256, 1, 1, 0), (512, 3, 2, 1), (128, 1, 1, 0), (256, 3, 2, 1), (128, 1, 1, 0), (256, 3, 1, 0),
          (128, 1, 1, 0), (256, 3, 1, 0)]
MBOX = [4, 6, 6, 6, 4, 4]
SOURCE_CHANNELS = [512, 1024, 512, 256, 256, 256]


def _conv(out_ch: int, in_ch: int, k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    fan_in = in_ch * k * k  # He init keeps activations O(1) through 15 ReLU convs
    return torch.randn(out_ch, in_ch, k, k, generator=gen) * (2 / fan_in) ** 0.5, torch.randn(out_ch, generator=gen) * 0.1


def ssd_pytorch_state_dict(num_classes: int = 21, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with ssd.pytorch's keys and shapes (``vgg.N``, ``L2Norm``, ``extras.N``, ``loc``, ``conf``)."""
    gen, state, index, in_ch = torch.Generator().manual_seed(seed), {}, 0, 3
    for v in VGG_CFG:
        if v in ("M", "C"):
            index += 1
            continue
        state[f"vgg.{index}.weight"], state[f"vgg.{index}.bias"] = _conv(v, in_ch, 3, gen)
        index, in_ch = index + 2, v
    state["vgg.31.weight"], state["vgg.31.bias"] = _conv(1024, 512, 3, gen)  # fc6 after pool5 (30)
    state["vgg.33.weight"], state["vgg.33.bias"] = _conv(1024, 1024, 1, gen)  # fc7
    in_ch = 1024
    for k, (out_ch, kernel, _, _) in enumerate(EXTRAS):
        state[f"extras.{k}.weight"], state[f"extras.{k}.bias"] = _conv(out_ch, in_ch, kernel, gen)
        in_ch = out_ch
    for k, (boxes, ch) in enumerate(zip(MBOX, SOURCE_CHANNELS)):
        state[f"loc.{k}.weight"], state[f"loc.{k}.bias"] = _conv(boxes * 4, ch, 3, gen)
        state[f"conf.{k}.weight"], state[f"conf.{k}.bias"] = _conv(boxes * num_classes, ch, 3, gen)
    state["L2Norm.weight"] = 20 + torch.rand(512, generator=gen)
    return state


def ssd_pytorch_forward(state: dict[str, torch.Tensor], x: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ssd.pytorch's SSD.forward (train phase) in plain torch ops: ``loc [B, A, 4]``, ``conf [B, A, C]``."""
    def conv(x: torch.Tensor, key: str, **kw: int) -> torch.Tensor:
        return F.relu(F.conv2d(x, state[f"{key}.weight"], state[f"{key}.bias"], **kw))

    sources, index = [], 0
    for v in VGG_CFG:
        if v in ("M", "C"):
            x = F.max_pool2d(x, 2, 2, ceil_mode=v == "C")
            index += 1
        else:
            x = conv(x, f"vgg.{index}", padding=1)
            index += 2
        if index == 23:  # after conv4_3's ReLU: L2Norm (eps 1e-10, as ssd.pytorch)
            norm = x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10
            sources.append(state["L2Norm.weight"].view(1, -1, 1, 1) * x / norm)
    x = F.max_pool2d(x, 3, 1, 1)
    x = conv(conv(x, "vgg.31", padding=6, dilation=6), "vgg.33")
    sources.append(x)
    for k, (_, _, stride, padding) in enumerate(EXTRAS):
        x = conv(x, f"extras.{k}", stride=stride, padding=padding)
        if k % 2 == 1:
            sources.append(x)
    batch = x.shape[0]
    loc = [F.conv2d(s, state[f"loc.{k}.weight"], state[f"loc.{k}.bias"], padding=1) for k, s in enumerate(sources)]
    conf = [F.conv2d(s, state[f"conf.{k}.weight"], state[f"conf.{k}.bias"], padding=1) for k, s in enumerate(sources)]
    loc = torch.cat([o.permute(0, 2, 3, 1).reshape(batch, -1) for o in loc], 1).view(batch, -1, 4)
    conf = torch.cat([o.permute(0, 2, 3, 1).reshape(batch, -1) for o in conf], 1).view(batch, -1, num_classes)
    return loc, conf


@pytest.mark.parametrize("input_order", ["rgb", "bgr"])
def test_from_ssd_pytorch_gives_the_same_outputs(input_order: str) -> None:
    num_classes = 5
    # float64, so that summing conv1_1's channels in another order (BGR) changes nothing measurable.
    state = {k: v.double() for k, v in ssd_pytorch_state_dict(num_classes, seed=1).items()}
    model = ssd_zoo.build("ssd300_vgg16", num_classes=num_classes).double().eval()
    load_state_dict(model, convert.from_ssd_pytorch(state, input_order=input_order))
    x = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 60  # 0..255 scale
    with torch.no_grad():
        cls_logits, box_regression = model.head(model.backbone(x))
        # A BGR-trained network sees the same picture with its channels reversed.
        loc, conf = ssd_pytorch_forward(state, x.flip(1) if input_order == "bgr" else x, num_classes)
    assert box_regression.shape == (1, 8732, 4) and cls_logits.shape == (1, 8732, num_classes)
    torch.testing.assert_close(box_regression, loc, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(cls_logits, conf, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["ssd300_vgg16", "ssd512_vgg16"])
@pytest.mark.parametrize("input_order", ["rgb", "bgr"])
def test_ssd_pytorch_round_trip_is_exact(name: str, input_order: str) -> None:
    state, _ = split_record(ssd_zoo.build(name, num_classes=3).state_dict())  # ssd.pytorch has no record
    other = convert.to_ssd_pytorch(state, input_order=input_order)
    assert "L2Norm.weight" in other and "vgg.33.weight" in other and "extras.7.weight" in other
    back = convert.from_ssd_pytorch(other, input_order=input_order)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], v) for k, v in state.items())
    if input_order == "bgr":
        torch.testing.assert_close(other["vgg.0.weight"], state["backbone.features.conv1_1.weight"].flip(1))


def test_torchvision_round_trip_is_exact_and_loads_strictly() -> None:
    state, _ = split_record(ssd_zoo.build("ssd300_vgg16", num_classes=91, anchors="coco").state_dict())
    tv = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91)
    tv.load_state_dict(convert.to_torchvision(state, anchors="coco"), strict=True)  # no record: the boxes said
    back = convert.from_torchvision(tv.state_dict())
    assert back.keys() == state.keys() and all(torch.equal(back[k], v) for k, v in state.items())


def test_detect_layout_and_unwrap() -> None:
    zoo = {"head.classification.0.depthwise.weight": torch.ones(1)}  # any head type
    assert convert.detect_layout(zoo) == "ssd_zoo"
    assert convert.detect_layout({"backbone.scale_weight": torch.ones(1)}) == "torchvision"
    assert convert.detect_layout(convert.unwrap({"model": {"module.L2Norm.weight": torch.ones(1)}})) == "ssd.pytorch"
    with pytest.raises(ValueError, match=r"some.pth.*first keys: \['conv.weight'\]"):
        convert.detect_layout({"conv.weight": torch.ones(1)}, where="some.pth")


def test_missing_unexpected_and_misshaped_keys_are_listed() -> None:
    state = ssd_pytorch_state_dict()
    del state["loc.5.bias"]
    state["extras.99.weight"] = torch.ones(1)
    with pytest.raises(KeyError, match=r"missing keys \['loc.5.bias'\].*unexpected keys \['extras.99.weight'\]"):
        convert.from_ssd_pytorch(state)
    state = convert.to_ssd_zoo(ssd_pytorch_state_dict(num_classes=21))
    state["head.classification.0.weight"] = state["head.classification.0.weight"][:8]
    with pytest.raises(ValueError, match=r"head.classification.0.weight': \(\(84, 512, 3, 3\), \(8, 512, 3, 3\)\)"):
        load_state_dict(ssd_zoo.build("ssd300_vgg16"), state, "x.pth")


def test_input_order_must_be_rgb_or_bgr() -> None:
    with pytest.raises(ValueError, match="input_order"):
        convert.from_ssd_pytorch(ssd_pytorch_state_dict(), input_order="rbg")  # type: ignore[arg-type]


def test_command_line_converts_ssd_pytorch_to_ssd_zoo_and_back(tmp_path: Path) -> None:
    state = ssd_pytorch_state_dict(num_classes=21)
    torch.save(state, tmp_path / "ssd.pth")
    done = run_in_process("ssd-zoo", ["convert", str(tmp_path / "ssd.pth"), str(tmp_path / "zoo.pth")])
    assert done.returncode == 0, done.stderr
    assert "(ssd.pytorch)" in done.stdout and "(ssd_zoo)" in done.stdout
    assert main(["convert", "--from", "ssd_zoo", "--to", "ssd.pytorch", str(tmp_path / "zoo.pth"), str(tmp_path / "back.pth")]) == 0
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert back.keys() == state.keys() and all(torch.equal(back[k], v) for k, v in state.items())


def test_converting_voc_default_boxes_to_torchvision_is_refused(tmp_path: Path) -> None:
    """torchvision's ssd300_vgg16 always decodes with its own (COCO) default boxes: a VOC-box model would be wrong."""
    torch.save(ssd_pytorch_state_dict(num_classes=21), tmp_path / "ssd.pth")
    done = run_in_process("ssd-zoo", ["convert", "--to", "torchvision", str(tmp_path / "ssd.pth"), str(tmp_path / "tv.pth")])
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "trained with default boxes input 300, sizes 30/60/111/162/213/264/315 px" in done.stderr
    assert "its own anchors='coco' (input 300, sizes 21/45/99/153/207/261/315 px" in done.stderr
    assert not (tmp_path / "tv.pth").exists()
    state = ssd_zoo.build("ssd300_vgg16", num_classes=21).state_dict()  # it records its (VOC) default boxes
    torch.save(state, tmp_path / "zoo.pth")
    with pytest.raises(SystemExit, match="trained with default boxes input 300, sizes 30/60"):
        main(["convert", "--to", "torchvision", str(tmp_path / "zoo.pth"), str(tmp_path / "tv.pth")])
    torch.save(split_record(state)[0], tmp_path / "old.pth")  # as saved before ssd_zoo 0.2: no record
    with pytest.raises(SystemExit, match="does not say which default boxes.*--anchors coco"):
        main(["convert", "--to", "torchvision", str(tmp_path / "old.pth"), str(tmp_path / "tv.pth")])
    with pytest.raises(SystemExit, match="trained with default boxes input 300, sizes 30/60"):
        main(["convert", "--to", "torchvision", "--anchors", "voc", str(tmp_path / "old.pth"), str(tmp_path / "tv.pth")])
    assert not (tmp_path / "tv.pth").exists()


def test_python_converters_refuse_what_the_command_line_refuses() -> None:
    """convert.to_torchvision and convert.from_ssd_zoo(..., "torchvision") check the default boxes as
    ssd-zoo convert does, with the same words."""
    voc = ssd_zoo.build("ssd300_vgg16", num_classes=21).state_dict()  # records its VOC boxes
    for convert_it in (lambda s, **kw: convert.to_torchvision(s, **kw),
                       lambda s, **kw: convert.from_ssd_zoo(s, "torchvision", **kw)):
        with pytest.raises(ValueError, match=r"zoo.pth was trained with default boxes input 300, sizes 30/60/111/162/"
                                             r"213/264/315 px.*its own anchors='coco' \(input 300, sizes 21/45/99"):
            convert_it(voc, where="zoo.pth")
        with pytest.raises(ValueError, match="state dict does not say which default boxes.*--anchors coco"):
            convert_it(split_record(voc)[0])
        with pytest.raises(ValueError, match="trained with default boxes input 300, sizes 30/60"):
            convert_it(split_record(voc)[0], anchors="voc")
        assert "backbone.scale_weight" in convert_it(split_record(voc)[0], anchors="coco")
    coco = ssd_zoo.build("ssd300_vgg16", num_classes=21, anchors="coco").state_dict()
    assert "backbone.scale_weight" in convert.to_torchvision(coco)
    ssd512 = ssd_zoo.build("ssd512_vgg16", num_classes=21, anchors="coco").state_dict()
    with pytest.raises(ValueError, match="has 7 head levels; torchvision's ssd300_vgg16 has 6"):
        convert.to_torchvision(ssd512)


def test_converted_coco_box_model_detects_the_same_in_torchvision(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ours = ssd_zoo.build("ssd300_vgg16", num_classes=5, anchors="coco").eval()
    with torch.no_grad():  # scaled heads: scores spread out, boxes move a little off the default boxes
        for conv in ours.head.classification:
            conv.weight.mul_(0.05)
        for conv in ours.head.regression:
            conv.weight.mul_(0.2)
    torch.save(ours.state_dict(), tmp_path / "zoo.pth")
    assert main(["convert", "--to", "torchvision", str(tmp_path / "zoo.pth"), str(tmp_path / "tv.pth")]) == 0
    tv = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=5).eval()
    tv.load_state_dict(torch.load(tmp_path / "tv.pth", weights_only=True), strict=True)
    images = [torch.rand(3, 240, 320, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        expected, found = ours(images)[0], tv(images)[0]
    k = 20  # the best detections: far from score ties
    assert len(expected["scores"]) >= k and torch.equal(found["labels"][:k], expected["labels"][:k])
    torch.testing.assert_close(found["boxes"][:k], expected["boxes"][:k], atol=1e-3, rtol=0)
    torch.testing.assert_close(found["scores"][:k], expected["scores"][:k], atol=1e-5, rtol=1e-4)
