"""The embedded shapes dataset: a real VOCdevkit tree, deterministic for a seed."""

import hashlib

import numpy as np
import pytest

from ssd_zoo.data.shapes import SHAPES_CLASSES, generate_shapes_voc, main, render_shapes_image
from ssd_zoo.data.voc import VOCDataset


def digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes_voc(tmp_path_factory.mktemp("shapes"), num_train=4, num_test=2, seed=3)


def test_voc_dataset_reads_it(shapes):
    train = VOCDataset(shapes, "2007-trainval")  # class names from classes.txt
    test = VOCDataset(shapes, "2007-test", class_names=SHAPES_CLASSES)
    assert train.class_names == SHAPES_CLASSES
    assert (len(train), len(test)) == (4, 2)
    for image, target in [train[i] for i in range(4)] + [test[i] for i in range(2)]:
        height, width = image.shape[-2:]
        assert 256 <= height <= 352 and 256 <= width <= 352
        assert 1 <= len(target["boxes"]) <= 6
        boxes = target["boxes"]
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes[:, 2] < width).all() and (boxes[:, 3] < height).all()
        assert ((1 <= target["labels"]) & (target["labels"] <= len(SHAPES_CLASSES))).all()


def test_deterministic_for_a_seed_and_independent_of_counts(shapes, tmp_path):
    again = generate_shapes_voc(tmp_path / "again", num_train=4, num_test=2, seed=3)
    assert digest(again) == digest(shapes)
    fewer = generate_shapes_voc(tmp_path / "fewer", num_train=2, num_test=0, seed=3)
    image, xml = "VOC2007/JPEGImages/train_000001.jpg", "VOC2007/Annotations/train_000000.xml"
    assert digest(fewer)[image] == digest(shapes)[image]
    other = generate_shapes_voc(tmp_path / "other", num_train=1, num_test=0, seed=4)
    assert digest(other)[xml] != digest(shapes)[xml]


def test_statistics_over_many_images():
    """Every class appears, sizes span ~16 px to half the image, a few objects are difficult."""
    rngs = [np.random.default_rng([0, 0, i]) for i in range(60)]
    objects = [obj for rng in rngs for obj in render_shapes_image(rng)[1]]
    names = {obj["name"] for obj in objects}
    assert names == set(SHAPES_CLASSES)
    sides = np.array([max(x2 - x1, y2 - y1) + 1 for x1, y1, x2, y2 in (o["box"] for o in objects)])
    difficult = np.array([o["difficult"] for o in objects])
    assert sides.max() > 100 and (sides[~difficult] >= 16).all()
    assert 0 < difficult.mean() < 0.2
    assert (difficult[sides < 16]).all()


def test_command_line(tmp_path, capsys):
    main([str(tmp_path / "cli"), "--train", "1", "--test", "1", "--seed", "5"])
    assert "VOCDataset(" in capsys.readouterr().out
    lists = tmp_path / "cli" / "VOC2007" / "ImageSets" / "Main"
    assert (lists / "trainval.txt").read_text() == "train_000000\n"
    assert (lists / "test.txt").read_text() == "test_000000\n"


def test_image_sides_option(tmp_path, capsys):
    main([str(tmp_path / "small"), "--train", "3", "--test", "0", "--sides", "128", "160"])
    for image, target in VOCDataset(tmp_path / "small", "2007-trainval"):
        height, width = image.shape[-2:]
        assert 128 <= height <= 160 and 128 <= width <= 160
        assert (target["boxes"][:, 2] < width).all() and (target["boxes"][:, 3] < height).all()
    with pytest.raises(ValueError, match="--sides: expected 32 <= MIN <= MAX <= 4096, found 200 100"):
        main([str(tmp_path / "bad"), "--sides", "200", "100"])


def test_workers_write_the_same_files(shapes, tmp_path):
    parallel = generate_shapes_voc(tmp_path / "parallel", num_train=4, num_test=2, seed=3, workers=2)
    files = sorted(p.relative_to(shapes) for p in shapes.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    assert all((shapes / f).read_bytes() == (parallel / f).read_bytes() for f in files)
