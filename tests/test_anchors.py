"""ssd_zoo.finetune: the coverage report on boxes with known answers, the fit on generated shapes data, the CLI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import TINY_MODEL_KWARGS, run_in_process
from PIL import Image

import ssd_zoo
from ssd_zoo.finetune import anchor_boxes, coverage, fit, load_boxes, to_input
from ssd_zoo.finetune.anchor_coverage import best_ious
from ssd_zoo.finetune.anchor_fit import level_best_iou
from ssd_zoo.cli import main
from ssd_zoo.models.ssdlite import ssdlite_spec
from ssd_zoo.ops.default_boxes import default_box_spec, grid_sides, preset

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "recipes/configs/shapes_quick.yaml"
TINY = {k: v for k, v in TINY_MODEL_KWARGS.items() if k != "anchors"}  # the tests choose the default boxes
HAND = default_box_spec(128, "coco", [14, 34, 52, 84.2, 109.3, 134.4], [[2, 3], [2, 3], [2, 3], [2, 3], [2]])


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssd_zoo.data.shapes import generate_shapes_voc  # as `python -m ssd_zoo.data.shapes DIR --train 300 --test 50`

    return generate_shapes_voc(tmp_path_factory.mktemp("shapes"), 300, 50, seed=0, sides=(128, 160))


def test_default_boxes_themselves_are_all_covered_and_far_boxes_none() -> None:
    spec = default_box_spec(128, "coco")
    anchors = anchor_boxes(spec)
    inside = anchors[((anchors >= 0) & (anchors <= 128)).all(dim=1)]
    report = coverage(spec, inside)
    assert report.covered == 1.0 and torch.allclose(report.best_iou, torch.ones(len(inside)))
    assert (report.positives >= 1).all()
    tiny = torch.tensor([[60.0, 60.0, 61.0, 61.0], [10.0, 10.0, 11.5, 12.0]])  # 1-2 px: IoU < 1/40 with any box
    thin = torch.tensor([[0.0, 60.0, 128.0, 61.0]])  # 128 x 1
    far = coverage(spec, torch.cat([tiny, thin]), torch.tensor([1, 1, 2]), class_names=("dot", "line"))
    assert far.covered == 0.0 and (far.positives == 0).all() and far.best_iou.max() < 0.1
    assert [(name, share) for name, share in far.worst_classes()] == [("dot", 0.0), ("line", 0.0)]
    assert "only 0.0% of the ground-truth boxes" in far.warning() and "dot 0%" in far.warning()


def test_iou_exactly_at_the_threshold_counts_as_covered() -> None:
    spec = default_box_spec(128, "coco")
    box = anchor_boxes(spec)[:1]  # level 0, first location, the s_k square (clipped at the image edge)
    half = box.clone()
    half[0, 2] = (box[0, 0] + box[0, 2]) / 2  # half its width inside it: IoU 0.5 with it
    report = coverage(spec, half, iou_thresh=float(best_ious(half, anchor_boxes(spec), 0.5)[0]))
    assert report.covered == 1.0


def test_size_buckets_and_rows() -> None:
    spec = default_box_spec(128, "coco")
    boxes = torch.tensor([[10.0, 10.0, 16.0, 16.0], [40.0, 40.0, 60.0, 60.0], [20.0, 20.0, 80.0, 80.0],
                          [0.0, 0.0, 128.0, 100.0]])  # sqrt(area) / 128: 0.047, 0.156, 0.47, 0.88
    report = coverage(spec, boxes, torch.tensor([1, 1, 2, 2]), class_names=("a", "b"))
    assert report.buckets.tolist() == [0, 1, 2, 2]
    rows = {(row["kind"], row["name"]): row for row in report.rows()}
    assert set(rows) == {("all", "all"), ("class", "a"), ("class", "b"), ("size", "small"), ("size", "medium"),
                         ("size", "large")}
    assert [rows[("size", n)]["boxes"] for n in ("small", "medium", "large")] == [1, 1, 2]
    assert rows[("all", "all")]["covered"] == report.covered == float((report.best_iou >= 0.5).float().mean())
    assert sum(report.histogram()) == 4 and "[small]" in report.table()
    assert json.loads(json.dumps(report.to_dict()))["rows"][0]["boxes"] == 4


@pytest.mark.parametrize("spec", [preset(300, "voc"), preset(300, "coco"), preset(512, "voc"), ssdlite_spec(320), HAND],
                         ids=["300voc", "300coco", "512voc", "ssdlite320", "hand128"])
def test_nearest_centre_best_iou_equals_trying_every_default_box(spec: object) -> None:
    size = spec.input_size
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(400, 2, generator=generator) * size
    wh = torch.exp(torch.rand(400, 2, generator=generator) * 5) * size / 150
    boxes = torch.cat([xy, xy + wh], dim=1).clamp(0, size)
    boxes = boxes[((boxes[:, 2:] - boxes[:, :2]) > 0.5).all(dim=1)]
    fast = torch.stack([level_best_iou(boxes, spec, k) for k in range(len(spec.steps))]).max(dim=0).values
    torch.testing.assert_close(fast, best_ious(boxes, anchor_boxes(spec), 0.5)[0])


def test_boxes_are_stretched_to_the_input_as_the_transform_does() -> None:
    boxes = torch.tensor([[10.0, 20.0, 110.0, 60.0]])
    sizes = torch.tensor([[100, 200]])  # height 100, width 200
    assert to_input(boxes, sizes, 100).tolist() == [[5.0, 20.0, 55.0, 60.0]]
    assert to_input(boxes, sizes, 100, pad_to_square=True).tolist() == [[5.0, 10.0, 55.0, 30.0]]


def _voc(root: Path, objects: dict[str, list[tuple[str, list[int], int]]], size: bool = True) -> Path:
    main_dir = root / "VOC2007" / "ImageSets" / "Main"
    main_dir.mkdir(parents=True)
    (root / "VOC2007" / "Annotations").mkdir()
    (root / "VOC2007" / "JPEGImages").mkdir()
    (main_dir / "trainval.txt").write_text("".join(f"{i}\n" for i in objects))
    (root / "classes.txt").write_text("cat\ndog\n")
    for image_id, items in objects.items():
        Image.new("RGB", (200, 100)).save(root / "VOC2007" / "JPEGImages" / f"{image_id}.jpg")
        xml = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                      f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b, d in items)
        head = "<size><width>200</width><height>100</height></size>" if size else ""
        (root / "VOC2007" / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{head}{xml}</annotation>")
    return root


def test_load_boxes_from_voc_and_coco(tmp_path: Path) -> None:
    objects = {"a": [("cat", [11, 21, 111, 61], 0), ("dog", [1, 1, 51, 51], 1)], "b": [("dog", [101, 1, 201, 101], 0)]}
    root = _voc(tmp_path / "voc", objects, size=False)  # no <size>: read from the image headers
    truth = load_boxes(root, 100)
    assert truth.class_names == ("cat", "dog") and truth.images == 2 and truth.labels.tolist() == [1, 2]
    assert truth.boxes.tolist() == [[5.0, 20.0, 55.0, 60.0], [50.0, 0.0, 100.0, 100.0]]  # 0-based, stretched
    assert len(load_boxes(root, 100, keep_difficult=True).boxes) == 3
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 20, 100, 40]}],
            "categories": [{"id": 7, "name": "cat"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    truth = load_boxes(tmp_path / "coco.json", 100, pad_to_square=True)
    assert truth.boxes.tolist() == [[5.0, 10.0, 55.0, 30.0]] and truth.class_names == ("cat",)
    del coco["images"][0]["width"]
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r"images\[0\] \(id 1\): expected numeric 'width' and 'height'"):
        load_boxes(tmp_path / "coco.json", 100)


def test_one_bad_annotation_is_reported_and_skipped(tmp_path: Path) -> None:
    root = _voc(tmp_path / "voc", {"a": [("cat", [11, 21, 111, 61], 0)], "b": [("dog", [1, 1, 51, 51], 0)]})
    (root / "VOC2007" / "Annotations" / "b.xml").write_text("<annotation><object>")
    with pytest.warns(UserWarning, match=r"skipped 1 of 2 images .*b\.xml: malformed XML"):
        truth = load_boxes(root, 100)
    assert truth.images == 1 and len(truth.boxes) == 1


def test_fit_covers_the_shapes_data_at_least_as_well_as_the_hand_sized_boxes(shapes: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    """From COCO's boxes at the demo's IoU 0.4, through the CLI: table, fit, YAML snippet, PNG, JSON."""
    out = tmp_path / "anchors.png"
    kwargs = "{anchors: coco, box_sizes: null, aspect_ratios: null}"
    main(["anchors", str(shapes), "--config", str(CONFIG), "--model-kwargs", kwargs, "--fit", "--png", str(out),
          "--json", str(tmp_path / "a.json")])
    printed = capsys.readouterr().out
    assert "ellipse" in printed and "[small]" in printed and "fitted default boxes" in printed and "note:" not in printed
    snippet = yaml.safe_load(printed[printed.index("model_kwargs:"):printed.rindex("-> ")])["model_kwargs"]
    report = json.loads((tmp_path / "a.json").read_text())
    assert snippet["box_sizes"] == report["model_kwargs"]["box_sizes"] and snippet["iou_thresh"] == 0.4
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > picture.height > 300  # two panels side by side

    fitted = ssd_zoo.build("ssd", backbone="resnet18", input_size=128, **TINY,
                           anchors="coco", box_sizes=snippet["box_sizes"], aspect_ratios=snippet["aspect_ratios"])
    assert fitted.default_boxes.spec.boxes_per_location == default_box_spec(128, "coco").boxes_per_location
    for splits in ("2007-trainval", "2007-test"):  # the boxes it was fitted to, and held-out ones
        truth = load_boxes(shapes, 128, splits=splits, pad_to_square=True)
        hand, ours = coverage(HAND, truth, iou_thresh=0.4), coverage(fitted, truth, iou_thresh=0.4)
        assert ours.covered >= hand.covered, splits
    assert report["after"]["covered"] > report["before"]["covered"]


def test_fit_never_covers_worse_than_the_start(shapes: Path) -> None:
    truth = load_boxes(shapes, 128, pad_to_square=True)
    result = fit(HAND, truth, iou_thresh=0.5, max_boxes=400)  # a sample: the report is on all boxes
    assert result.after.covered >= result.before.covered == coverage(HAND, truth).covered
    assert result.spec.boxes_per_location == HAND.boxes_per_location and grid_sides(result.spec) == grid_sides(HAND)
    assert "boxes per location 6/6/6/6/4 unchanged" in result.summary()


def test_train_voc_prints_the_coverage_and_warns_below_90(shapes: Path, capsys: pytest.CaptureFixture) -> None:
    sys.path.insert(0, str(ROOT))
    from ssd_zoo.train.config import load_config
    from ssd_zoo.train.engine import report_coverage
    from ssd_zoo.train.model import build_model

    cfg = load_config(CONFIG, {"data_root": str(shapes), "model_kwargs": {**TINY, "iou_thresh": 0.7}})
    report_coverage(cfg, build_model(cfg, 7))
    printed = capsys.readouterr().out
    assert "matching IoU 0.7" in printed and "warning: only" in printed and "worst classes: " in printed


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="ssd-zoo anchors: expected a VOCdevkit folder or a COCO .json file, found "
                                         "nothing at .*missing"):
        main(["anchors", str(tmp_path / "missing"), "--model", "ssd300_vgg16"])
    with pytest.raises(SystemExit, match="unknown model 'ssd300_vgg61'; did you mean ssd300_vgg16"):
        main(["anchors", str(tmp_path), "--model", "ssd300_vgg61"])
    with pytest.raises(SystemExit, match="expected --model NAME, --config FILE or --weights CHECKPOINT"):
        main(["anchors", str(tmp_path)])
    root = _voc(tmp_path / "empty", {"a": [], "b": [("cat", [1, 1, 20, 20], 1)]})  # only a difficult box
    done = run_in_process("ssd-zoo", ["anchors", str(root), "--model", "ssd300_vgg16"])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"ssd-zoo anchors: {root}: expected ground-truth boxes, found none in 2 images (splits '2007-trainval')"]


def test_the_vgg16_builders_take_fitted_boxes() -> None:
    sizes, ratios = [20, 50, 100, 150, 200, 250, 300], [[1.5], [1.5, 2.5], [2, 3], [2, 3], [2], [2]]
    spec = ssd_zoo.build("ssd300_vgg16", box_sizes=sizes, aspect_ratios=ratios).default_boxes.spec
    assert spec.sizes == tuple(map(float, sizes)) and spec.aspect_ratios[0] == (1.5,)
    assert spec.steps == preset(300, "voc").steps and spec.clip == "all"  # the preset's grid and clipping
    assert ssd_zoo.build("ssd300_vgg16").default_boxes.spec == preset(300, "voc")
