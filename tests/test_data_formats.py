"""The same data in VOC, COCO and YOLO gives the same targets; conversions never overwrite; formats are told apart."""

import json

import pytest
import torch
from PIL import Image

from ssd_zoo.data import CocoDataset, VOCDataset, YoloDataset
from ssd_zoo.data.formats import convert, list_splits, open_dataset
from ssd_zoo.data.records import coco_role, detect_format, read_data
from ssd_zoo.data.shapes import generate_shapes_voc


@pytest.fixture(scope="module")
def three_formats(tmp_path_factory):
    """The shapes generator's VOC folder (5 train, 3 test tiny images), converted to COCO and YOLO."""
    root = tmp_path_factory.mktemp("formats")
    voc = generate_shapes_voc(root / "voc", 5, 3, seed=3, sides=(48, 80))
    return {"voc": voc, "coco": convert(voc, root / "coco", "coco"), "yolo": convert(voc, root / "yolo", "yolo")}


def targets(dataset):
    return [(dataset[i][0], dataset[i][1]) for i in range(len(dataset))]


@pytest.mark.parametrize("split", ["train", "test"])
def test_same_data_in_three_formats_gives_the_same_targets(three_formats, split):
    datasets = {fmt: open_dataset(path, split) for fmt, path in three_formats.items()}
    assert isinstance(datasets["voc"], VOCDataset) and isinstance(datasets["coco"], CocoDataset)
    assert isinstance(datasets["yolo"], YoloDataset)
    assert {len(d) for d in datasets.values()} == {5 if split == "train" else 3}
    assert {d.class_names for d in datasets.values()} == {("circle", "ellipse", "square", "rectangle", "triangle", "cross")}
    reference = targets(datasets["voc"])
    assert sum(len(t["boxes"]) for _, t in reference) > 5
    for fmt in ("coco", "yolo"):
        for (image, target), (ref_image, ref) in zip(targets(datasets[fmt]), reference):
            torch.testing.assert_close(image, ref_image, rtol=0, atol=0)  # the same bytes, copied
            torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), ref["boxes"].as_subclass(torch.Tensor),
                                       rtol=0, atol=1e-3)
            assert target["boxes"].canvas_size == ref["boxes"].canvas_size
            assert torch.equal(target["labels"], ref["labels"]) and target["labels"].dtype == torch.int64
            assert target["image_id"] == ref["image_id"]


def test_round_trip_back_to_voc_keeps_boxes(three_formats, tmp_path):
    back = convert(three_formats["yolo"], tmp_path / "back", "voc")
    assert list_splits(back) == ("train", "val", "test")  # YOLO's val is the test images (it needs one)
    assert sorted(p.name for p in (back / "VOC2007" / "JPEGImages").iterdir())[-1] == "train_000004.jpg"
    assert len(list((back / "VOC2007" / "JPEGImages").iterdir())) == 8  # val and test share their images
    for split in ("train", "test"):
        for (_, target), (_, ref) in zip(targets(open_dataset(back, split)), targets(open_dataset(three_formats["voc"], split))):
            torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), ref["boxes"].as_subclass(torch.Tensor),
                                       rtol=0, atol=1e-2)
            assert torch.equal(target["labels"], ref["labels"])


def test_records_hold_what_the_datasets_give(three_formats):
    data = read_data(three_formats["coco"])
    assert data.format == "coco" and sorted(data.splits) == ["test", "train"]
    record = data.splits["train"][0]
    _, target = open_dataset(three_formats["coco"], "train")[0]
    assert (record.width, record.height) == target["boxes"].canvas_size[::-1]
    assert torch.equal(record.boxes, target["boxes"].as_subclass(torch.Tensor))


def test_formats_told_apart_by_what_is_there(three_formats, tmp_path):
    assert detect_format(three_formats["voc"]) == "voc"
    assert detect_format(three_formats["voc"] / "VOC2007") == "voc"
    assert detect_format(three_formats["coco"]) == "coco"
    assert detect_format(three_formats["coco"] / "train.json") == "coco"
    assert detect_format(three_formats["yolo"]) == "yolo"
    assert detect_format(three_formats["yolo"] / "data.yaml") == "yolo"
    assert len(open_dataset(three_formats["voc"] / "VOC2007", "test")) == 3
    assert len(open_dataset(three_formats["coco"] / "test.json", "test")) == 3  # one file, one split
    with pytest.raises(ValueError, match=r"test.json: expected a COCO .json file for the split .train., found the splits \[.test.\]"):
        open_dataset(three_formats["coco"] / "test.json", "train")
    with pytest.raises(FileNotFoundError, match=r"expected a dataset: a YOLO data.yaml .* found a folder without"):
        detect_format(tmp_path)
    (tmp_path / "VOCdevkit" / "VOC2007" / "Annotations").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"for VOC, pass the VOCdevkit folder inside it: .*VOCdevkit$"):
        detect_format(tmp_path)
    with pytest.raises(ValueError, match=r"expected the split 'val' .* found the splits \['test', 'train'\]"):
        open_dataset(three_formats["voc"], "val")


@pytest.mark.parametrize("name, role", [("instances_val2017.json", "val"), ("train.json", "train"),
                                        ("valid/_annotations.coco.json", "val"), ("test/labels.json", "test"),
                                        ("annotations.json", "train")])
def test_coco_split_from_its_name(tmp_path, name, role):
    assert coco_role(tmp_path / name) == role


def test_never_overwrites(three_formats, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"taken already exists; expected a new \(or empty\) output folder"):
        convert(three_formats["voc"], tmp_path / "taken", "yolo")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert detect_format(convert(three_formats["voc"], tmp_path / "empty", "coco")) == "coco"
    with pytest.raises(ValueError, match=r"expected an output format among \('voc', 'coco', 'yolo'\), found 'kitti'"):
        convert(three_formats["voc"], tmp_path / "new", "kitti")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "taken"]  # no staging folder left behind


def test_a_bad_label_stops_conversion_before_anything_is_written(tmp_path):
    data = tmp_path / "data"
    (data / "images" / "train").mkdir(parents=True)
    (data / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (10, 10)).save(data / "images" / "train" / "a.png")
    (data / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n")
    (data / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [one]\n")
    with pytest.raises(ValueError, match=r"a\.txt:2: unknown-class: class id 3 is outside names \(0\.\.0\)"):
        convert(data, tmp_path / "out", "coco")
    assert not (tmp_path / "out").exists()


def test_coco_output_is_plain_coco(three_formats):
    document = json.loads((three_formats["coco"] / "test.json").read_text())
    assert [c["id"] for c in document["categories"]] == [1, 2, 3, 4, 5, 6]
    assert document["images"][0]["file_name"] == "images/test/test_000000.jpg"
    ann = document["annotations"][0]
    assert set(ann) == {"id", "image_id", "category_id", "bbox", "area", "iscrowd"}
    assert ann["area"] == pytest.approx(ann["bbox"][2] * ann["bbox"][3])
