"""YoloDataset on small YOLO folders written here: both layouts, background images, v2 transforms, bad labels."""

import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from ssd_zoo.data.yolo import YoloDataset, label_file, read_data_yaml


def write_yolo(root, labels, *, names="[cat, dog]", side_by_side=False, size=(40, 20), extra_yaml=""):
    """labels: {split: {stem: label text or None (no label file)}}; solid-colour PNGs of ``size`` (w, h)."""
    for split, images in labels.items():
        image_dir = root / split if side_by_side else root / "images" / split
        label_dir = image_dir if side_by_side else root / "labels" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for stem, text in images.items():
            Image.new("RGB", size, (10, 200, 10)).save(image_dir / f"{stem}.png")
            if text is not None:
                (label_dir / f"{stem}.txt").write_text(text)
    keys = "".join(f"{split}: {split if side_by_side else 'images/' + split}\n" for split in labels)
    (root / "data.yaml").write_text(f"{keys}names: {names}\n{extra_yaml}")
    return root / "data.yaml"


def test_items_match_the_voc_and_coco_target_format(tmp_path):
    yaml_file = write_yolo(tmp_path, {"train": {"a": "1 0.5 0.5 0.5 0.5\n\n0 0.25 0.75 0.1 0.2\n", "b": None, "c": ""}})
    dataset = YoloDataset(tmp_path, "train")
    assert len(dataset) == 3 and dataset.class_names == ("cat", "dog")
    assert dataset.ids == ["images/train/a.png", "images/train/b.png", "images/train/c.png"]
    image, target = dataset[0]
    assert isinstance(image, tv_tensors.Image) and image.shape == (3, 20, 40) and image.dtype == torch.float32
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].canvas_size == (20, 40)
    assert target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    # 40x20 image: the dog's centre (20, 10), size 20x10; the cat's centre (10, 15), size 4x4.
    torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor),
                               torch.tensor([[10.0, 5.0, 30.0, 15.0], [8.0, 13.0, 12.0, 17.0]]))
    assert target["labels"].tolist() == [2, 1] and target["labels"].dtype == torch.int64
    assert target["difficult"].tolist() == [False, False] and target["image_id"].item() == 0
    assert set(target) == {"boxes", "labels", "difficult", "image_id"}
    for index in (1, 2):  # no label file, and an empty one: background images
        _, empty = dataset[index]
        assert empty["boxes"].shape == (0, 4) and empty["labels"].dtype == torch.int64
    assert read_data_yaml(yaml_file).class_names == ("cat", "dog")  # the yaml file itself works too


def test_side_by_side_layout_names_dict_and_v2_transforms(tmp_path):
    write_yolo(tmp_path, {"train": {"a": "0 0.5 0.5 0.5 0.5\n"}, "val": {"b": "1 0.5 0.5 1 1\n"}},
               names="{0: cat, 1: dog}", side_by_side=True)
    assert label_file(tmp_path / "train" / "a.png") == tmp_path / "train" / "a.txt"
    flip = v2.RandomHorizontalFlip(p=1.0)
    dataset = YoloDataset(tmp_path / "data.yaml", "train", transforms=flip)
    _, target = dataset[0]
    assert target["boxes"].tolist() == [[10.0, 5.0, 30.0, 15.0]]  # symmetric: the flip leaves it in place
    _, val = YoloDataset(tmp_path, "val")[0]
    assert val["boxes"].tolist() == [[0.0, 0.0, 40.0, 20.0]] and val["labels"].tolist() == [2]


def test_labels_folder_is_the_last_images_folder_replaced(tmp_path):
    assert label_file(tmp_path / "images" / "x" / "images" / "a.jpg") == tmp_path / "images" / "x" / "labels" / "a.txt"


def test_list_file_split_and_path_key(tmp_path):
    data = tmp_path / "data"
    write_yolo(data, {"train": {"a": "0 0.5 0.5 0.5 0.5\n", "b": "1 0.5 0.5 0.2 0.2\n"}})
    (data / "train.txt").write_text("./images/train/b.png\n")
    (tmp_path / "data.yaml").write_text("path: data\ntrain: train.txt\nnames: [cat, dog]\nnc: 2\n")
    dataset = YoloDataset(tmp_path / "data.yaml", "train")
    assert dataset.ids == ["images/train/b.png"] and dataset[0][1]["labels"].tolist() == [2]


def test_zero_size_box_is_dropped_with_a_warning_naming_the_file(tmp_path):
    write_yolo(tmp_path, {"train": {"a": "0 0.5 0.5 0 0.5\n1 0.5 0.5 0.5 0.5\n"}})
    with pytest.warns(UserWarning, match=r"a\.txt: dropped 1 of 2 boxes"):
        _, target = YoloDataset(tmp_path)[0]
    assert target["labels"].tolist() == [2]


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.5", r"expected 5 fields 'class cx cy w h', found 4"),
    ("0 0.5 0.5 0.5 0.5 0.1 0.2", r"found 7 \(a segmentation polygon"),
    ("dog 0.5 0.5 0.5 0.5", r"expected numbers, found 'dog 0.5"),
    ("0 0.5 nan 0.5 0.5", r"expected finite numbers"),
    ("2 0.5 0.5 0.5 0.5", r"class id 2 is outside names \(0\.\.1\)"),
    ("-1 0.5 0.5 0.5 0.5", r"class id -1 is outside names"),
    ("0.5 0.5 0.5 0.5 0.5", r"expected an integer class id"),
    ("0 0.9 0.5 0.5 0.5", r"expected a box inside the image .* x 0\.65\.\.1\.15"),
    ("0 20 10 4 4", r"coordinates normalised to 0\.\.1"),
    ("0 0.5 0.5 -0.1 0.5", r"expected a width and height >= 0"),
])
def test_bad_label_names_file_and_line(tmp_path, line, message):
    write_yolo(tmp_path, {"train": {"a": "0 0.5 0.5 0.5 0.5\n", "b": f"1 0.5 0.5 0.2 0.2\n\n{line}\n"}})
    with pytest.raises(ValueError, match=message) as info:
        YoloDataset(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'labels' / 'train' / 'b.txt'}:3: ")


def test_byte_order_mark_crlf_and_quoted_ids(tmp_path):
    write_yolo(tmp_path, {"train": {"a": None}}, names="{'0': cat, '1': dog}")
    (tmp_path / "labels" / "train" / "a.txt").write_bytes(b"\xef\xbb\xbf1 0.5 0.5 0.5 0.5\r\n0 0.5 0.5 1 1\r\n")
    dataset = YoloDataset(tmp_path)
    assert dataset.class_names == ("cat", "dog") and dataset[0][1]["labels"].tolist() == [2, 1]


def test_a_hair_outside_is_clamped(tmp_path):
    write_yolo(tmp_path, {"train": {"a": "0 0.5 0.5 1.005 1.005\n"}})
    _, target = YoloDataset(tmp_path)[0]
    assert target["boxes"].tolist() == [[0.0, 0.0, 40.0, 20.0]]


@pytest.mark.parametrize("yaml_text, message", [
    ("train: images/train\nnames: [cat, cat]\n", r"names: expected distinct class names"),
    ("train: images/train\nnames: {0: cat, 2: dog}\n", r"names: expected the ids 0\.\.1 as keys"),
    ("train: images/train\nnames: [cat, dog]\nnc: 3\n", r"nc: expected the number of names \(2\), found 3"),
    ("names: [cat]\n", r"expected the keys 'train' and 'names'"),
    ("train: images/nowhere\nnames: [cat]\n", r"train: expected a folder of images.*images/nowhere"),
    ("train: [images/train\n", r"malformed YAML"),
])
def test_bad_data_yaml_names_file_and_key(tmp_path, yaml_text, message):
    write_yolo(tmp_path, {"train": {"a": ""}})
    (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        YoloDataset(tmp_path)
    assert "data.yaml" in str(info.value)


def test_missing_split_and_missing_yaml(tmp_path):
    write_yolo(tmp_path, {"train": {"a": ""}})
    with pytest.raises(ValueError, match=r"expected a 'val' key .* found the splits \['train'\]"):
        YoloDataset(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="expected a data.yaml file or a folder holding one"):
        YoloDataset(tmp_path / "images")


def test_roboflow_export_layout(tmp_path):
    """Roboflow writes ``train/images``, ``valid/images`` beside data.yaml, named as ``../train/images``."""
    for split, colour in (("train", (1, 1, 1)), ("valid", (2, 2, 2))):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "labels").mkdir()
        Image.new("RGB", (8, 8), colour).save(tmp_path / split / "images" / "x.jpg")
        (tmp_path / split / "labels" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['thing']\n")
    _, target = YoloDataset(tmp_path, "val")[0]
    assert target["boxes"].tolist() == [[2.0, 2.0, 6.0, 6.0]]
