"""The recipes' measuring tools: anchor coverage of a dataset (ssd-zoo anchors --config), and the demo's ablation variants."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recipes import demo_ablations  # noqa: E402
from ssd_zoo.cli import main  # noqa: E402
from ssd_zoo.train.config import load_config, parse_override  # noqa: E402


def test_anchor_coverage_of_the_shapes_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ssd_zoo.data.shapes import generate_shapes_voc

    root = generate_shapes_voc(tmp_path / "shapes", num_train=8, num_test=2, seed=0)
    tiny = "{anchors: coco, box_sizes: null, aspect_ratios: null, extra_channels: [16, 16, 16], iou_thresh: 0.5}"
    config = ROOT / "recipes/configs/shapes_quick.yaml"
    assert main(["anchors", str(root), "--config", str(config), "--json", str(tmp_path / "c.json")]) == 0
    sized = capsys.readouterr().out
    assert main(["anchors", str(root), "--config", str(config), "--model-kwargs", tiny, "--json", str(tmp_path / "d.json")]) == 0
    coco = capsys.readouterr().out
    assert "matching IoU 0.4" in sized and "matching IoU 0.5" in coco and "circle" in sized
    a, b = (json.loads((tmp_path / name).read_text())["before"] for name in ("c.json", "d.json"))
    names = {row["name"] for row in a["rows"] if row["kind"] == "class"}
    assert names <= {"circle", "ellipse", "square", "rectangle", "triangle", "cross"} and names
    assert a["rows"][0]["boxes"] == b["rows"][0]["boxes"] > 0 and (a["iou_thresh"], b["iou_thresh"]) == (0.4, 0.5)
    assert a["default_boxes"] != b["default_boxes"]


def test_every_ablation_is_a_valid_config_change() -> None:
    for name, (sets, _) in demo_ablations.VARIANTS.items():
        cfg = load_config(demo_ablations.CONFIG, dict(parse_override(item) for item in sets))
        assert cfg.model == "ssd", name


def test_the_1500_image_split_is_a_prefix_of_trainval(tmp_path: Path) -> None:
    folder = tmp_path / "VOC2007" / "ImageSets" / "Main"
    folder.mkdir(parents=True)
    (folder / "trainval.txt").write_text("".join(f"{i:05d}\n" for i in range(2000)))
    demo_ablations.subset_split(tmp_path, "trainval1500", 1500)
    assert (folder / "trainval1500.txt").read_text().split() == [f"{i:05d}" for i in range(1500)]
    with pytest.raises(SystemExit, match="lists 2000 images, fewer than 3000"):
        demo_ablations.subset_split(tmp_path, "big", 3000)

