"""Videos: generated clips written here with PyAV (moving squares), detected in batches, tracked with ByteTrack,
written back as an annotated video and JSON lines by ``ssd-zoo detect``.

The detector is a model-like callable that finds the squares from the frame's pixels (each square has its own
pure colour; all are class 1), so the test checks decoding, batching, sampling, tracking and writing, not an SSD.
Since every square is "square", the tracker must keep them apart by their motion, not by their class.
"""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import Tensor

from ssd_zoo.detect import video
from ssd_zoo.cli import main

COLOURS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # one per moving square
SIDE, HEIGHT, WIDTH, FRAMES = 24, 96, 160, 24


def square_positions(t: int) -> list[tuple[int, int]]:
    """Top-left corners of the three squares in frame ``t``: two cross paths horizontally, one moves down."""
    return [(8 + 4 * t, 10), (WIDTH - SIDE - 8 - 4 * t, 14), (70, 4 + 2 * t)]


def make_clip(path: Path, frames: int = FRAMES, fps: int = 12) -> None:
    """An H.264 (or MPEG-4) clip of ``frames`` frames: grey background, three coloured squares moving."""
    codec = "libx264" if path.suffix == ".mp4" else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for t in range(frames):
            image = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
            for colour, (x, y) in zip(COLOURS, square_positions(t)):
                image[y:y + SIDE, x:x + SIDE] = (colour * 255).numpy().astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class ColourDetector:
    """Model-like: per image, one box per colour in :data:`COLOURS` around the pixels near it, class 1."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        self.batches.append(len(images))
        out = []
        for image in images:
            boxes = []
            for colour in COLOURS:
                near = (image - colour[:, None, None]).abs().amax(0) < 0.3
                ys, xs = near.nonzero(as_tuple=True)
                if len(xs) > 20:  # the square, not a few ringing pixels
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            out.append({"boxes": boxes_t, "scores": torch.full((len(boxes),), 0.9),
                        "labels": torch.ones(len(boxes), dtype=torch.int64)})
        return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    make_clip(path)
    return path


def test_frames_are_decoded_in_batches_and_sampled(clip: Path) -> None:
    detector = ColourDetector()
    frames = list(video.detect(detector, clip, every=3, batch_size=4))
    assert [f.index for f in frames] == list(range(0, FRAMES, 3))
    assert frames[1].time == pytest.approx(3 / 12)
    assert detector.batches == [4, 4]
    for frame in frames:  # boxes where the squares were drawn, within compression noise
        t = frame.index
        expected = sorted(square_positions(t))
        found = sorted((round(b[0]), round(b[1])) for b in frame.detections["boxes"].tolist())
        assert len(found) == 3 and all(abs(a - c) <= 1 and abs(b - d) <= 1 for (a, b), (c, d) in zip(found, expected))


def test_tracker_keeps_one_id_per_moving_square(clip: Path) -> None:
    frames = list(video.detect(ColourDetector(), clip, batch_size=5, track=True))
    assert len(frames) == FRAMES
    ids_by_square: list[set[int]] = [set(), set(), set()]
    for frame in frames:
        det = frame.detections
        assert det["track_id"].dtype == torch.int64 and len(det["track_id"]) == len(det["boxes"])
        if frame.index == 0:  # ByteTrack starts tracks on an object's first frame, names them from its second
            assert det["track_id"].tolist() == [-1, -1, -1]
            continue
        for box, track_id in zip(det["boxes"].tolist(), det["track_id"].tolist()):
            # which square is it? the one whose drawn corner is nearest
            corners = square_positions(frame.index)
            k = min(range(3), key=lambda i: abs(corners[i][0] - box[0]) + abs(corners[i][1] - box[1]))
            ids_by_square[k].add(track_id)
    assert all(len(ids) == 1 for ids in ids_by_square), ids_by_square  # one id each, the whole clip
    assert set.union(*ids_by_square) == {1, 2, 3}


def test_detect_command_writes_annotated_video_and_json_lines(clip: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from ssd_zoo.cli import detect as cli

    monkeypatch.setattr(cli, "load_detector", lambda args: (ColourDetector(), "colours", "none",
                                                            ["__background__", "square"]))
    out = tmp_path / "out"
    assert main(["detect", str(clip), "--out", str(out), "--track", "--every", "2", "--batch-size", "3"]) == 0
    lines = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(0, FRAMES, 2))
    assert lines[1]["time"] == pytest.approx(2 / 12, abs=1e-4)  # seconds, written with 4 decimals
    assert all(len(line["detections"]) == 3 for line in lines)
    assert {d["track_id"] for line in lines[1:] for d in line["detections"]} == {1, 2, 3}
    assert lines[0]["detections"][0]["name"] == "square"
    with av.open(str(out / "clip.mp4")) as written:
        frames = [f.to_ndarray(format="rgb24") for f in written.decode(video=0)]
    assert len(frames) == len(lines)
    assert frames[0].shape[0] >= HEIGHT and frames[0].shape[1] >= WIDTH  # upscaled for legible labels


def test_a_file_ffmpeg_cannot_open_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="broken.mp4: FFmpeg cannot open it"):
        list(video.read_frames(tmp_path / "broken.mp4"))
