"""ssd_zoo.detect.predict: sliced inference on large generated images, folders with broken files and colliding names,
and the pictures' drawing.

The detector here is model-like and honest about scale: like an SSD it sees every image resized to a fixed
input (here 300 px) and finds the coloured squares from that input's pixels, so an object that shrinks below a
few input pixels is lost, as small objects are by a real SSD on a large image.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ssd_zoo.detect import predict
from ssd_zoo.cli import main
from ssd_zoo.detect.draw import class_colour, draw_detections

INPUT = 300


class ResizingColourDetector:
    """Resize to ``INPUT x INPUT`` (stretch), find blobs of non-grey pixels of at least ``min_pixels`` input
    pixels, map their boxes back to the image; label 1 for red blobs, 2 for blue ones."""

    def __init__(self, min_pixels: int = 16) -> None:
        self.min_pixels, self.calls = min_pixels, []

    def __call__(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        self.calls.append(len(images))
        out = []
        for image in images:
            h, w = image.shape[-2:]
            small = F.interpolate(image[None], size=(INPUT, INPUT), mode="bilinear", align_corners=False)[0]
            red, blue = small[0] > 0.75, small[2] > 0.75
            boxes, labels = [], []
            for label, mask in ((1, red & ~blue), (2, blue & ~red)):
                for x0, y0, x1, y1 in blobs(mask):
                    if int(mask[y0:y1, x0:x1].sum()) >= self.min_pixels:
                        boxes.append([x0 * w / INPUT, y0 * h / INPUT, x1 * w / INPUT, y1 * h / INPUT])
                        labels.append(label)
            out.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        "scores": torch.full((len(boxes),), 0.9), "labels": torch.tensor(labels, dtype=torch.int64)})
        return out


def _runs(line: Tensor) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True in a bool ``[N]``."""
    edges = torch.diff(torch.cat([torch.zeros(1), line.float(), torch.zeros(1)])).nonzero().flatten().tolist()
    return list(zip(edges[0::2], edges[1::2]))


def blobs(mask: Tensor) -> list[tuple[int, int, int, int]]:
    """``(x0, y0, x1, y1)`` of the blobs of a bool ``[H, W]`` mask made of separate axis-aligned rectangles (bands
    of rows that hold any, columns within each band, then the rows within each of those)."""
    return [(x0, y0 + a, x1, y0 + b) for y0, y1 in _runs(mask.any(1)) for x0, x1 in _runs(mask[y0:y1].any(0))
            for a, b in _runs(mask[y0:y1, x0:x1].any(1))]


def canvas_with_squares(height: int, width: int, side: int, step: int) -> tuple[Tensor, Tensor]:
    """A grey ``H x W`` canvas with red and blue ``side``-px squares every ``step`` px, and one big red square;
    returns the image and the ``[N, 4]`` boxes (the big one last)."""
    image = torch.full((3, height, width), 0.5)
    boxes = []
    for k, (y, x) in enumerate((y, x) for y in range(40, height - side - 40, step) for x in range(40, width - side - 40, step)):
        image[:, y:y + side, x:x + side] = torch.tensor([1.0, 0.0, 0.0] if k % 2 == 0 else [0.0, 0.0, 1.0])[:, None, None]
        boxes.append([x, y, x + side, y + side])
    big = [width // 3, height // 3, width // 3 + 900, height // 3 + 700]  # larger than a tile
    image[:, big[1]:big[3], big[0]:big[2]] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    kept = [b for b in boxes if b[2] <= big[0] or b[0] >= big[2] or b[3] <= big[1] or b[1] >= big[3]]
    return image, torch.tensor(kept + [big], dtype=torch.float32)


def test_tile_windows_cover_the_image_with_the_overlap() -> None:
    windows = predict.tile_windows(3000, 4000, 300, 0.25)
    xs = sorted({w[0] for w in windows})
    assert all(w[2] - w[0] == 300 and w[3] - w[1] == 300 for w in windows)
    assert xs[0] == 0 and xs[-1] == 3700 and all(b - a <= 225 for a, b in zip(xs, xs[1:]))
    assert predict.tile_windows(200, 250, 300, 0.25) == [(0, 0, 250, 200)]
    with pytest.raises(ValueError, match="overlap=1.0: expected a fraction"):
        predict.tile_windows(10, 10, 5, 1.0)


def test_tiles_find_the_small_objects_the_whole_image_pass_misses() -> None:
    from torchvision.ops import box_iou

    image, truth = canvas_with_squares(1800, 2400, side=24, step=300)  # 24 px at 2400 px: 3 px at the input
    detector = ResizingColourDetector()
    (whole,) = predict.images(detector, [image])
    tiled = predict.tiles(detector, image, size=INPUT, overlap=0.25, batch_size=16)

    def found(det: dict[str, Tensor]) -> Tensor:
        return box_iou(truth, det["boxes"]).amax(1) >= 0.5 if len(det["boxes"]) else torch.zeros(len(truth), dtype=torch.bool)

    assert found(whole).tolist() == [False] * (len(truth) - 1) + [True]  # the big square only
    assert found(tiled).all()  # every small square and, through the whole-image pass, the big one
    assert len(tiled["boxes"]) == len(truth)  # each once: overlaps merged by NMS, cut boxes dropped
    assert detector.calls[1:-1] == [16] * (len(detector.calls) - 3) + [detector.calls[-2]] and detector.calls[-1] == 1
    without = predict.tiles(detector, image, size=INPUT, overlap=0.25, whole=False)
    assert found(without)[:-1].all() and not found(without)[-1]  # too large for any tile


def test_draw_gives_each_class_its_colour_and_upscales_small_images() -> None:
    image = torch.zeros(3, 100, 160)
    det = {"boxes": torch.tensor([[10.0, 10.0, 60.0, 60.0], [80.0, 20.0, 150.0, 90.0]]),
           "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 2]), "track_id": torch.tensor([7, -1])}
    drawn = draw_detections(image, det, ["__background__", "circle", "square"])
    assert drawn.dtype == torch.uint8 and drawn.shape == (3, 500, 800)  # x5: the shorter side >= 480
    pixels = {tuple(p) for p in drawn.permute(1, 2, 0).reshape(-1, 3).tolist()}
    assert class_colour(1) in pixels and class_colour(2) in pixels and class_colour(1) != class_colour(2)
    # the box outline of class 2 at its left edge (x = 80 * 5), below its label
    assert tuple(drawn[:, 400, 401].tolist()) == class_colour(2)
    big = draw_detections(torch.zeros(3, 600, 800), det, ["__background__", "circle", "square"])
    assert big.shape == (3, 600, 800)


def _write_folder(root: Path) -> None:
    photo = np.full((120, 160, 3), 128, dtype=np.uint8)
    photo[30:70, 40:90] = (255, 0, 0)
    (root / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(root / "a.jpg")
    Image.fromarray(photo).save(root / "a.png")  # the same stem: its picture must not overwrite a.jpg's
    Image.fromarray(photo).save(root / "sub" / "a.jpg")  # the same name in a subfolder
    (root / "notes.jpg").write_text("not an image")  # a non-image with an image suffix
    Image.fromarray(photo).save(root / "cut.png")
    (root / "cut.png").write_bytes((root / "cut.png").read_bytes()[:200])  # truncated
    (root / "readme.txt").write_text("ignored: not an image suffix")


def test_a_folder_with_broken_files_and_colliding_names_loses_nothing(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from ssd_zoo.cli import detect as cli

    _write_folder(tmp_path / "in")
    monkeypatch.setattr(cli, "load_detector", lambda args: (ResizingColourDetector(), "colours", "none",
                                                            ["__background__", "red", "blue"]))
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "in"), "--out", str(out), "--batch-size", "2"]) == 3  # 3: skipped some
    report = json.loads((out / "detections.json").read_text())
    assert sorted(r["picture"] for r in report["images"]) == ["a.jpg.jpg", "a.png.jpg", "sub/a.jpg"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.jpg.jpg", "a.png.jpg", "detections.json", "sub/a.jpg"]
    skipped = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"notes.jpg", "cut.png"}
    assert "notes.jpg: not a readable image" in skipped["notes.jpg"] and "cut.png" in skipped["cut.png"]
    for result in report["images"]:
        (det,) = result["detections"]
        assert det["name"] == "red" and det["box"] == pytest.approx([40, 30, 90, 70], abs=2)


def test_output_names_never_collide() -> None:
    names = [Path("a.jpg"), Path("a.png"), Path("b.jpg"), Path("x/a.jpg"), Path("b.jpg")]
    out = predict.output_names(names, ".jpg")
    assert [p.as_posix() for p in out] == ["a.jpg.jpg", "a.png.jpg", "b.jpg.jpg", "x/a.jpg", "b.jpg_2.jpg"]
