"""VOCDataset on small hand-written VOCdevkit trees: parsing, difficult, custom classes, dirty data."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from ssd_zoo.data.voc import VOC_CLASSES, VOCDataset, parse_splits


def xml(objects, filename="x.jpg"):
    body = "".join(
        f"<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox>"
        f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for name, (x1, y1, x2, y2), difficult in objects
    )
    return f"<annotation><filename>{filename}</filename>{body}</annotation>"


def write_voc(root: Path, year: str, image_set: str, images: dict, size=(24, 16)) -> Path:
    """images: {id: xml text}; writes a solid-colour JPEG of ``size`` (w, h) per id."""
    year_dir = root / f"VOC{year}"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year_dir / sub).mkdir(parents=True, exist_ok=True)
    for image_id, text in images.items():
        Image.new("RGB", size, (200, 30, 30)).save(year_dir / "JPEGImages" / f"{image_id}.jpg")
        (year_dir / "Annotations" / f"{image_id}.xml").write_text(text)
    (year_dir / "ImageSets" / "Main" / f"{image_set}.txt").write_text("\n".join(images) + "\n")
    return root


def test_item_format_and_zero_based_boxes(tmp_path):
    root = write_voc(tmp_path, "2007", "test", {
        "000001": xml([("dog", (1, 2, 10, 12), False), ("person", (5, 5, 20, 16), True)]),
        "000002": xml([]),
    })
    dataset = VOCDataset(root, "2007-test")
    assert len(dataset) == 2
    image, target = dataset[0]
    assert image.dtype == torch.float32 and image.shape == (3, 16, 24)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image[0].mean() == pytest.approx(200 / 255, abs=0.02)  # RGB order
    assert target["boxes"].dtype == torch.float32
    assert target["boxes"].tolist() == [[0, 1, 9, 11], [4, 4, 19, 15]]  # XML minus 1
    assert target["labels"].tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("person") + 1]
    assert target["labels"].dtype == torch.int64
    assert target["difficult"].tolist() == [False, True]
    # torchvision's types, every target value a tensor; the file id in dataset.ids.
    assert isinstance(image, tv_tensors.Image) and isinstance(target["boxes"], tv_tensors.BoundingBoxes)
    assert target["boxes"].format.name == "XYXY" and target["boxes"].canvas_size == (16, 24)
    assert target["image_id"].dtype == torch.int64 and target["image_id"].item() == 0
    assert dataset.ids == ["000001", "000002"] and dataset[1][1]["image_id"].item() == 1
    _, empty = dataset[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_keep_difficult_false_drops_them(tmp_path):
    root = write_voc(tmp_path, "2007", "trainval", {
        "a": xml([("cat", (1, 1, 5, 5), True), ("cat", (2, 2, 9, 9), False)]),
    })
    _, target = VOCDataset(root, "2007-trainval", keep_difficult=False)[0]
    assert target["boxes"].tolist() == [[1, 1, 8, 8]]
    assert target["difficult"].tolist() == [False]


def test_joined_splits_and_custom_classes(tmp_path):
    write_voc(tmp_path, "2007", "trainval", {"a": xml([("widget", (1, 1, 5, 5), False)])})
    write_voc(tmp_path, "2012", "trainval", {"b": xml([("gadget", (1, 1, 5, 5), False)])})
    dataset = VOCDataset(tmp_path, "2007-trainval+2012-trainval", class_names=["gadget", "widget"])
    assert [dataset[i][1]["labels"].tolist() for i in range(2)] == [[2], [1]]
    assert dataset.class_names == ("gadget", "widget")
    with pytest.raises(ValueError, match=r"a\.xml, object 0: class 'widget' is not one of"):
        VOCDataset(tmp_path, "2007-trainval")[0]
    (tmp_path / "classes.txt").write_text("gadget\nwidget\n")
    assert VOCDataset(tmp_path, "2007-trainval").class_names == ("gadget", "widget")
    assert VOCDataset(tmp_path, "2007-trainval", class_names=["widget"]).class_names == ("widget",)


def test_boxes_outside_are_clamped_and_degenerate_dropped(tmp_path):
    root = write_voc(tmp_path, "2007", "test", {
        "a": xml([
            ("dog", (-5, 3, 40, 10), False),  # partly outside 24x16: clamped
            ("cat", (30, 3, 40, 10), False),  # fully outside: empty after clamping
            ("cow", (5, 5, 5, 9), False),  # zero width
        ]),
    })
    with pytest.warns(UserWarning, match=r"a\.xml: dropped 2 of 3 boxes"):
        _, target = VOCDataset(root, "2007-test")[0]
    assert target["boxes"].tolist() == [[0, 2, 24, 9]]
    assert target["labels"].tolist() == [VOC_CLASSES.index("dog") + 1]
    assert target["difficult"].tolist() == [False]


def test_missing_root_shows_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)JPEGImages.*Annotations.*trainval\.txt"):
        VOCDataset(tmp_path / "nowhere", "2007-trainval")
    write_voc(tmp_path, "2007", "trainval", {})
    with pytest.raises(FileNotFoundError, match=r"Main/test\.txt does not exist"):
        VOCDataset(tmp_path, "2007-test")
    with pytest.raises(ValueError, match="expected 'YEAR-SET'"):
        parse_splits("2007trainval")


@pytest.mark.parametrize(
    "text, message",
    [
        ("<annotation><object>", r"bad\.xml: malformed XML"),
        ("<annotation><object><name>dog</name></object></annotation>", r"object 0: expected a <bndbox>"),
        (xml([("dog", ("one", 1, 5, 5), False)]), r"expected a number in <xmin>, found 'one'"),
    ],
)
def test_malformed_xml_names_the_file(tmp_path, text, message):
    root = write_voc(tmp_path, "2007", "test", {"bad": text})
    with pytest.raises(ValueError, match=message):
        VOCDataset(root, "2007-test")[0]


def test_unreadable_image_names_the_file(tmp_path):
    root = write_voc(tmp_path, "2007", "test", {"a": xml([])})
    (root / "VOC2007" / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"a\.jpg: not a readable image"):
        VOCDataset(root, "2007-test")[0]
    (root / "VOC2007" / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"a\.jpg"):
        VOCDataset(root, "2007-test")[0]


def test_transforms_receive_image_and_target(tmp_path):
    root = write_voc(tmp_path, "2007", "test", {"a": xml([("dog", (1, 1, 5, 5), False)])})
    seen = []

    def transforms(image, target):
        seen.append((tuple(image.shape), sorted(target)))
        return image.flip(-1), target

    image, _ = VOCDataset(root, "2007-test", transforms=transforms)[0]
    assert seen == [((3, 16, 24), ["boxes", "difficult", "image_id", "labels"])]
