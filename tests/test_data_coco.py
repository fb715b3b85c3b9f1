"""CocoDataset on a tiny COCO JSON with non-contiguous category ids."""

import json

import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from ssd_zoo.data.coco import CocoDataset

ANNOTATIONS = {
    "images": [
        {"id": 7, "file_name": "seven.png", "width": 20, "height": 10},
        {"id": 3, "file_name": "three.png", "width": 20, "height": 10},
    ],
    "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"},
                   {"id": 18, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 18, "bbox": [2, 3, 4, 5], "iscrowd": 0, "area": 12.5},
        {"id": 2, "image_id": 7, "category_id": 90, "bbox": [15, 0, 10, 4], "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 20, 10], "iscrowd": 1},
    ],
}


@pytest.fixture
def coco(tmp_path):
    for image in ANNOTATIONS["images"]:
        Image.new("RGB", (20, 10), (0, 0, 255)).save(tmp_path / image["file_name"])
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(ANNOTATIONS))
    return tmp_path, ann_file


def test_contiguous_labels_xyxy_and_crowd_left_out(coco):
    image_dir, ann_file = coco
    dataset = CocoDataset(image_dir, ann_file)
    assert len(dataset) == 2
    assert dataset.class_names == ("person", "dog", "toothbrush")  # category-id order
    assert dataset.category_ids == [1, 18, 90]
    image, target = dataset[0]
    assert image.shape == (3, 10, 20) and image.dtype == torch.float32
    assert target["image_id"].item() == 0 and dataset.ids == ["7", "3"]  # the JSON id in ids
    assert isinstance(image, tv_tensors.Image) and target["boxes"].canvas_size == (10, 20)
    # [15, 0, 10, 4] runs past the 20 px wide image: clamped to x2 = 20. The crowd box is gone.
    assert target["boxes"].tolist() == [[2, 3, 6, 8], [15, 0, 20, 4]]
    assert target["labels"].tolist() == [2, 3]
    assert target["difficult"].tolist() == [False, False]
    assert target["area"].tolist() == [12.5, 40.0]
    _, empty = dataset[1]  # an image without annotations is a valid negative
    assert empty["boxes"].shape == (0, 4) and empty["labels"].dtype == torch.int64


def test_include_crowd_keeps_them_flagged(coco):
    _, target = CocoDataset(*coco, include_crowd=True)[0]
    assert target["labels"].tolist() == [2, 3, 1]
    assert target["iscrowd"].tolist() == [False, False, True]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["annotations"][0].update(category_id=5), r"annotation 1: category_id 5 is not"),
        (lambda d: d["annotations"][1].pop("bbox"), r"annotation 2: missing key\(s\) \['bbox'\]"),
        (lambda d: d["annotations"][0].update(image_id=99), r"annotation 1: image_id 99 is not"),
        (lambda d: d["images"][1].pop("file_name"), r"images\[1\]: expected keys \['file_name', 'id'\]"),
        (lambda d: d.pop("categories"), r"expected a list under key 'categories'"),
    ],
)
def test_bad_json_names_file_and_entry(coco, mutate, message):
    image_dir, ann_file = coco
    data = json.loads(json.dumps(ANNOTATIONS))
    mutate(data)
    ann_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as info:
        CocoDataset(image_dir, ann_file)
    assert "instances.json" in str(info.value)


def test_unparsable_json_and_missing_paths(coco):
    image_dir, ann_file = coco
    ann_file.write_text("{not json")
    with pytest.raises(ValueError, match=r"instances\.json: malformed JSON"):
        CocoDataset(image_dir, ann_file)
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        CocoDataset(image_dir, image_dir / "nothere.json")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        CocoDataset(image_dir / "missing", ann_file)
