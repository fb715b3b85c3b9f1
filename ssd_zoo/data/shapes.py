"""An embedded detection dataset of geometric shapes, written as a real VOCdevkit folder.

Six classes in three look-alike pairs, told apart by geometry alone (colours are random for every
object): ``circle`` vs ``ellipse`` and ``square`` vs ``rectangle`` differ only in aspect ratio
(1:1 vs 1.7-2.5:1), ``triangle`` vs ``cross`` in outline. Each image (about 300 px a side) has a
textured, noisy background and 1 to 6 objects whose longer side is 16 px to half the image; later
objects may overlap earlier ones. An object is marked ``difficult`` when it is tiny (longer side
under 16 px) or less than half of it is visible, as VOC marks objects hard to recognise.

Command line (writes ``OUT/VOC2007/`` with ``JPEGImages/``, ``Annotations/`` and
``ImageSets/Main/{trainval,test}.txt``)::

    python -m ssd_zoo.data.shapes OUT --train 2000 --test 500 --seed 0

then ``VOCDataset(OUT, "2007-trainval")`` (class names come from ``OUT/classes.txt``). Every image is drawn from
its own seeded generator, so the output is the same for a seed whatever ``--train``/``--test`` are.
"""

from __future__ import annotations

import argparse
import multiprocessing
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ssd_zoo.data.voc import CLASSES_FILE
from ssd_zoo.errors import add_debug_flag, run_main

SHAPES_CLASSES: tuple[str, ...] = ("circle", "ellipse", "square", "rectangle", "triangle", "cross")
# More shapes, for datasets of other classes (``--classes``, e.g. to fine-tune the demo's model on new ones):
# ``ring`` (a circle with a hole) vs ``circle`` and ``diamond`` (a square turned 45 degrees) vs ``square`` are
# told apart by outline, ``star`` (five points) and ``hexagon`` by their corners.
MORE_SHAPES: tuple[str, ...] = ("ring", "diamond", "star", "hexagon")
ALL_SHAPES: tuple[str, ...] = SHAPES_CLASSES + MORE_SHAPES

IMAGE_SIDES = (256, 352)  # default range from which width and height are each drawn (pixels)
MAX_OBJECTS = 6
TINY = 16  # objects whose longer side is below this (pixels) are marked difficult
TINY_P = 0.06  # probability that an object is drawn tiny (8-15 px)
MIN_VISIBLE = 0.3  # a placement that would hide more of an earlier object is redrawn
DIFFICULT_VISIBLE = 0.5  # objects less visible than this are marked difficult


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured float32 ``[H, W, 3]`` background in 0..255: smooth blotches, random strokes."""
    coarse = rng.uniform(0, 255, size=(rng.integers(3, 8), rng.integers(3, 8), 3))
    blotches = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC)
    canvas = Image.blend(
        blotches, Image.new("RGB", (width, height), tuple(rng.integers(0, 256, 3).tolist())), 0.5
    )
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(0, 8)):  # thin lines and arcs: clutter that is no object
        x0, x1 = rng.integers(0, width, 2)
        y0, y1 = rng.integers(0, height, 2)
        colour = tuple(rng.integers(0, 256, 3).tolist())
        draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(1, 4)))
    return np.asarray(canvas, dtype=np.float32)


def _shape_mask(
    rng: np.random.Generator, name: str, height: int, width: int, tiny: bool
) -> np.ndarray:
    """Draw one shape of class ``name`` at a random place; returns its bool ``[H, W]`` mask."""
    side = rng.uniform(8, TINY) if tiny else rng.uniform(TINY, min(height, width) / 2)
    w = h = side
    if name in ("ellipse", "rectangle"):
        ratio = rng.uniform(1.7, 2.5)
        w, h = (side, side / ratio) if rng.random() < 0.5 else (side / ratio, side)
    x0 = rng.uniform(0, width - w - 1)
    y0 = rng.uniform(0, height - h - 1)
    x1, y1 = x0 + w, y0 + h
    image = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(image)
    if name in ("circle", "ellipse"):
        draw.ellipse([x0, y0, x1, y1], fill=1)
    elif name in ("square", "rectangle"):
        draw.rectangle([x0, y0, x1, y1], fill=1)
    elif name == "triangle":  # apex up, down, left or right
        corners = [(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)]
        turns = int(rng.integers(0, 4))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        for _ in range(turns):  # rotate by 90 degrees about the centre (w == h, so it stays inside)
            corners = [(cx - (y - cy), cy + (x - cx)) for x, y in corners]
        draw.polygon(corners, fill=1)
    elif name == "cross":
        t = side / 3  # arm thickness
        draw.rectangle([x0, y0 + t, x1, y1 - t], fill=1)
        draw.rectangle([x0 + t, y0, x1 - t, y1], fill=1)
    elif name in MORE_SHAPES:
        _draw_more(draw, name, (x0, y0, x1, y1))
    else:
        raise ValueError(f"unknown shape {name!r}; expected one of {ALL_SHAPES}")
    return np.asarray(image, dtype=bool)


def _draw_more(draw: ImageDraw.ImageDraw, name: str, box: tuple[float, float, float, float]) -> None:
    """Fill one of :data:`MORE_SHAPES` into the square ``box`` (x0, y0, x1, y1); no random draws (the
    six original shapes' images stay the same)."""
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if name == "ring":  # the hole is half the diameter: thick enough to survive a 128 px input
        draw.ellipse([x0, y0, x1, y1], fill=1)
        draw.ellipse([cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2], fill=0)
    elif name == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=1)
    elif name == "star":  # five points, the inner corners at 0.45 of the radius
        corners = [(cx + (r if k % 2 == 0 else 0.45 * r) * np.sin(np.pi * k / 5),
                    cy - (r if k % 2 == 0 else 0.45 * r) * np.cos(np.pi * k / 5)) for k in range(10)]
        draw.polygon(corners, fill=1)
    elif name == "hexagon":
        draw.polygon([(cx + r * np.cos(np.pi * k / 3), cy + r * np.sin(np.pi * k / 3)) for k in range(6)], fill=1)


def _visible_fraction(owner: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """Fraction of each mask still on top; ``owner`` ``[H, W]`` is the top object's index or -1."""
    return np.array([(owner[m] == k).mean() for k, m in enumerate(masks)])


def render_shapes_image(
    rng: np.random.Generator, sides: tuple[int, int] = IMAGE_SIDES, classes: tuple[str, ...] = SHAPES_CLASSES
) -> tuple[np.ndarray, list[dict]]:
    """Draw one image: returns uint8 ``[H, W, 3]`` and objects ``{"name", "box", "difficult"}``.

    Width and height are each drawn from ``sides`` (pixels, inclusive); each object's class from ``classes``
    (names from :data:`ALL_SHAPES`).
    ``box`` is ``(x1, y1, x2, y2)`` in 0-based inclusive pixel indices of the object's full
    (unoccluded) extent, the same convention as ``VOCDataset``'s boxes.
    """
    width, height = (int(s) for s in rng.integers(sides[0], sides[1] + 1, size=2))
    canvas = _background(rng, height, width)
    owner = np.full((height, width), -1, dtype=np.int64)
    names: list[str] = []
    masks: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        name = classes[int(rng.integers(len(classes)))]
        tiny = rng.random() < TINY_P
        for _attempt in range(20):
            mask = _shape_mask(rng, name, height, width, tiny)
            trial = np.where(mask, len(masks), owner)
            if mask.any() and (_visible_fraction(trial, masks) >= MIN_VISIBLE).all():
                break
        else:
            continue  # no placement left earlier objects visible enough: skip this object
        # A colour that stands out from what lies under the object (by >= 150 summed over RGB).
        under = canvas[mask].mean(axis=0)
        colour = rng.integers(0, 256, 3)
        for _attempt in range(50):
            if np.abs(colour - under).sum() >= 150:
                break
            colour = rng.integers(0, 256, 3)
        canvas[mask] = colour
        owner = trial
        names.append(name)
        masks.append(mask)
    canvas += rng.normal(0, 8, size=canvas.shape)  # sensor noise over objects and background
    objects = []
    for name, mask, visible in zip(names, masks, _visible_fraction(owner, masks)):
        cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))
        longer = max(box[2] - box[0], box[3] - box[1]) + 1
        difficult = longer < TINY or visible < DIFFICULT_VISIBLE
        objects.append({"name": name, "box": box, "difficult": bool(difficult)})
    return np.clip(canvas, 0, 255).astype(np.uint8), objects


def _voc_xml(image_id: str, width: int, height: int, objects: list[dict]) -> ET.ElementTree:
    """A VOC annotation; boxes are written 1-based, as the devkit's XML files are."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = str(int(obj["difficult"]))
        bndbox = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["box"]):
            ET.SubElement(bndbox, tag).text = str(value + 1)
    ET.indent(root)
    return ET.ElementTree(root)


def _write_image(year_dir: Path, image_id: str, seed: list[int], sides: tuple[int, int],
                 classes: tuple[str, ...] = SHAPES_CLASSES) -> None:
    """Draw the image of ``seed`` and write its JPEG and XML annotation under ``year_dir``."""
    pixels, objects = render_shapes_image(np.random.default_rng(seed), sides, classes)
    Image.fromarray(pixels).save(year_dir / "JPEGImages" / f"{image_id}.jpg", quality=92)
    xml = _voc_xml(image_id, pixels.shape[1], pixels.shape[0], objects)
    xml.write(year_dir / "Annotations" / f"{image_id}.xml", encoding="unicode")


def check_counts(num_train: int, num_test: int, sides: tuple[int, int], workers: int) -> None:
    """Raise ValueError naming the argument for an image count, size range or worker count out of range."""
    for name, value in (("train", num_train), ("test", num_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"--{name}: expected a number of images >= 0, found {value!r}")
    if num_train + num_test == 0:
        raise ValueError("--train, --test: expected at least one image in all, found 0 and 0")
    if len(sides) != 2 or not 32 <= sides[0] <= sides[1] <= 4096:
        raise ValueError(f"--sides: expected 32 <= MIN <= MAX <= 4096, found {' '.join(map(str, sides))}")
    if workers < 1:
        raise ValueError(f"--workers: expected at least 1, found {workers}")


def generate_shapes_voc(
    out_dir: str | Path, num_train: int, num_test: int, seed: int = 0, sides: tuple[int, int] = IMAGE_SIDES,
    workers: int = 1, classes: tuple[str, ...] = SHAPES_CLASSES,
) -> Path:
    """Write the shapes dataset as a VOCdevkit folder at ``out_dir`` and return ``out_dir``.

    ``sides``: the range (pixels) of image widths and heights; objects span 16 px to half the image.
    ``classes``: the shapes drawn (names from :data:`ALL_SHAPES`, label order; default the six of
    :data:`SHAPES_CLASSES`, whose images are the same as before other shapes existed). ``out_dir/classes.txt``
    lists them, so ``VOCDataset(out_dir)`` labels them ``1..len(classes)``.

    ``num_train`` images go to ``VOC2007/ImageSets/Main/trainval.txt`` (ids ``train_000000``, ...),
    ``num_test`` to ``test.txt`` (ids ``test_000000``, ...). Image ``i`` of a split is drawn from
    ``numpy.random.default_rng([seed, split, i])``, so outputs are reproducible per seed, and the same
    for any number of ``workers`` (processes drawing images side by side).
    """
    check_counts(num_train, num_test, sides, workers)
    classes = tuple(classes)
    unknown = [name for name in classes if name not in ALL_SHAPES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes: expected distinct names from {ALL_SHAPES}, found {list(classes)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"shapes: expected an output folder at {str(out_dir)!r}, found a file")
    year_dir = out_dir / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year_dir / sub).mkdir(parents=True, exist_ok=True)
    (out_dir / CLASSES_FILE).write_text("".join(f"{name}\n" for name in classes))
    ids = {"trainval": [f"train_{i:06d}" for i in range(num_train)], "test": [f"test_{i:06d}" for i in range(num_test)]}
    jobs = [(year_dir, image_id, [seed, split_index, i], tuple(sides), classes)
            for split_index, split_ids in enumerate(ids.values()) for i, image_id in enumerate(split_ids)]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.starmap(_write_image, jobs, chunksize=64)
    else:
        for job in jobs:
            _write_image(*job)
    for list_name, split_ids in ids.items():
        (year_dir / "ImageSets" / "Main" / f"{list_name}.txt").write_text("".join(f"{i}\n" for i in split_ids))
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ssd_zoo.data.shapes",
        description="Write the embedded shapes detection dataset as a VOCdevkit folder.",
    )
    parser.add_argument("out", type=Path, help="output folder (VOCdevkit layout)")
    parser.add_argument("--train", type=int, default=2000, help="images in trainval (2000)")
    parser.add_argument("--test", type=int, default=500, help="images in test (500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--sides", type=int, nargs=2, default=IMAGE_SIDES, metavar=("MIN", "MAX"),
                        help=f"range of image widths and heights in pixels {IMAGE_SIDES}")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing images side by side (1)")
    parser.add_argument("--classes", type=lambda text: tuple(text.split(",")), default=SHAPES_CLASSES,
                        help=f"comma-separated shapes to draw, in label order, from {','.join(ALL_SHAPES)} "
                        f"(default {','.join(SHAPES_CLASSES)})")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    unknown = [name for name in args.classes if name not in ALL_SHAPES]
    if unknown or len(set(args.classes)) != len(args.classes):
        raise ValueError(f"--classes: expected distinct names from {','.join(ALL_SHAPES)}, found {','.join(args.classes)}")
    out = generate_shapes_voc(args.out, args.train, args.test, args.seed, tuple(args.sides), args.workers, args.classes)
    print(
        f"wrote {args.train} trainval + {args.test} test images to {out / 'VOC2007'}; read with "
        f"VOCDataset({str(out)!r}, '2007-trainval')"
    )


if __name__ == "__main__":
    # Bad input (a count out of range, an output path that is a file): one line, exit code 2 (ssd_zoo.errors).
    run_main(main, "python -m ssd_zoo.data.shapes")
