"""check_dataset: counts per split and class, box sizes at the input, and each kind of problem with its file."""

import json

import pytest
from PIL import Image

from ssd_zoo.data.check import check_dataset
from ssd_zoo.data.formats import open_dataset
from ssd_zoo.data.shapes import generate_shapes_voc


def image(path, colour, size=(100, 100)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def yolo_folder(root, labels):
    """labels: {stem: text} for train images of distinct colours (so no two share bytes)."""
    for k, (stem, text) in enumerate(labels.items()):
        image(root / "images" / "train" / f"{stem}.png", (k * 20, 0, 0))
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    (root / "data.yaml").write_text("train: images/train\nnames: [cat, dog]\n")
    return root


def test_clean_dataset_counts_classes_and_sizes_at_the_input(tmp_path):
    # 100x100 images at a 300 input: 0.1 -> 30 px (small), 0.2 -> 60 px (medium), 0.5 -> 150 px (large).
    root = yolo_folder(tmp_path, {"a": "0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.5 0.5\n",
                                  "b": "1 0.3 0.3 0.2 0.2\n", "c": ""})
    report = check_dataset(root, input_size=300)
    assert report.ok and report.problems == [] and report.format == "yolo"
    stats = report.splits["train"]
    assert (stats.images, stats.background) == (3, 1)
    assert stats.images_per_class == [1, 2] and stats.boxes_per_class == [2, 2]
    assert stats.sizes == [[1, 1, 0], [0, 1, 1]]
    assert check_dataset(root, input_size=100).splits["train"].sizes == [[2, 0, 0], [1, 1, 0]]  # 50 px: medium
    text = str(report)
    assert "train: 3 images (1 without a box), 4 boxes" in text and text.endswith("no problems found")
    assert json.loads(json.dumps(report.to_dict()))["splits"]["train"]["boxes_per_class"] == [2, 2]


def test_shapes_data_is_clean_and_counted_like_the_dataset(tmp_path):
    voc = generate_shapes_voc(tmp_path / "voc", 4, 2, seed=1, sides=(48, 64))
    report = check_dataset(voc)
    assert report.ok, str(report)
    assert sorted(report.splits) == ["test", "train"]
    boxes = sum(len(open_dataset(voc, "train")[i][1]["labels"]) for i in range(4))
    assert sum(report.splits["train"].boxes_per_class) == boxes
    assert sum(map(sum, report.splits["train"].sizes)) == boxes


def test_each_problem_kind_is_found_with_its_file_and_line(tmp_path):
    root = yolo_folder(tmp_path, {
        "a": "0 0.5 0.5 0.2 0.2\n0 0.5 0.5\n",        # line 2: bad-label
        "b": "1 0.5 0.5 0.2 0.2\n\n7 0.5 0.5 0.2 0.2\n",  # line 3: unknown-class
        "c": "0 0.5 0.5 0 0.3\n",                    # line 1: degenerate-box (zero width)
        "d": "0 0.5 0.5 0.2 0.2\n",
    })
    train = root / "images" / "train"
    (train / "e.png").write_bytes((train / "d.png").read_bytes())  # duplicate-image
    (train / "f.jpg").write_bytes(b"not a jpeg")                   # unreadable-image (header)
    image(train / "g.png", (1, 2, 3), size=(300, 300))
    (train / "g.png").write_bytes((train / "g.png").read_bytes()[:-40])  # unreadable-image (truncated)
    report = check_dataset(root)
    assert not report.ok
    found = {(p.kind, p.file.replace(str(root) + "/", ""), p.line) for p in report.problems}
    assert found == {
        ("bad-label", "labels/train/a.txt", 2),
        ("unknown-class", "labels/train/b.txt", 3),
        ("degenerate-box", "labels/train/c.txt", 1),
        ("duplicate-image", "images/train/e.png", None),
        ("unreadable-image", "images/train/f.jpg", None),
        ("unreadable-image", "images/train/g.png", None),
    }
    lines = str(report).splitlines()
    assert f"{root}/labels/train/a.txt:2: bad-label: expected 5 fields 'class cx cy w h', found 3" in lines
    assert any(line.startswith(f"{root}/images/train/e.png: duplicate-image: the same bytes as {train / 'd.png'}")
               for line in lines)
    assert report.problem_counts()["unreadable-image"] == 2
    assert report.splits["train"].boxes_per_class == [2, 1]  # the good boxes of a, b and d are counted


def test_voc_and_coco_problems(tmp_path):
    voc = generate_shapes_voc(tmp_path / "voc", 3, 0, seed=2, sides=(48, 64))
    annotations = voc / "VOC2007" / "Annotations"
    xml = (annotations / "train_000000.xml").read_text()
    (annotations / "train_000000.xml").write_text(xml.replace("<name>", "<name>x", 1))  # unknown-class
    (voc / "VOC2007" / "JPEGImages" / "train_000001.jpg").unlink()                 # missing image
    report = check_dataset(voc)
    found = {(p.kind, p.file.replace(str(voc) + "/", "")) for p in report.problems}
    assert found == {("unknown-class", "VOC2007/Annotations/train_000000.xml"),
                     ("unreadable-image", "VOC2007/JPEGImages/train_000001")}
    unknown = next(p for p in report.problems if p.kind == "unknown-class")
    assert unknown.message.startswith("object 0: class 'x")

    image(tmp_path / "coco" / "a.png", (9, 9, 9), size=(20, 10))
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [2, 2, 0, 4]},
                            {"id": 6, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4]}]}
    (tmp_path / "coco" / "train.json").write_text(json.dumps(coco))
    report = check_dataset(tmp_path / "coco" / "train.json")
    assert [str(p) for p in report.problems] == [
        f"{tmp_path}/coco/train.json, image 1: degenerate-box: annotation 5: box (2, 2, 2, 6) has no area inside "
        "the 20x10 image"]
    assert report.splits["train"].boxes_per_class == [1]


def test_no_dataset_at_all_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a dataset"):
        check_dataset(tmp_path / "nothing")
    with pytest.raises(ValueError, match="input_size: expected a positive number of pixels, found 0"):
        check_dataset(tmp_path, input_size=0)
