"""Videos and streams: decode frames with PyAV, detect them in batches, track objects, write an annotated video.

    >>> for frame in video.detect(model, "clip.mp4", every=2, track=True):
    ...     frame.index, frame.time, frame.detections["track_id"]

Frames come from anything FFmpeg opens (files of any container and codec, a webcam such as ``/dev/video0``
with ``format="v4l2"``, an ``rtsp://`` URL) through PyAV (``pip install 'ssd_zoo[video]'``). Tracking is
ByteTrack from Roboflow's ``trackers`` (the maintained successor of supervision's ByteTrack; ``pip install
'ssd_zoo[track]'``): each detection gets a ``track_id`` that persists across frames.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ssd_zoo.detect.predict import Detector, images, tiles
from ssd_zoo.errors import require

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}


class Frame(NamedTuple):
    """One detected frame: ``index`` (0-based, in the source), ``time`` (seconds from the start), ``image``
    (float ``[3, H, W]`` in [0, 1]) and ``detections`` (``boxes`` [D, 4] xyxy frame pixels, ``scores``,
    ``labels``, and ``track_id`` int64 [D] when tracking)."""

    index: int
    time: float
    image: Tensor
    detections: dict[str, Tensor]


def read_frames(source: str | Path, every: int = 1, **open_options: Any) -> Iterator[tuple[int, float, Tensor]]:
    """``(index, time in seconds, float [3, H, W] RGB in 0..1)`` for every ``every``-th frame of ``source``.

    ``open_options`` reach ``av.open`` (e.g. ``format="v4l2"`` for a webcam). ValueError (source and reason)
    when FFmpeg cannot open it or it has no video stream."""
    av = require("av", "video")
    if every < 1:
        raise ValueError(f"every={every}: expected a positive number of frames")
    with _open(source, **open_options) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 30)
        decoded, index = enumerate(container.decode(stream)), -1
        while True:
            try:
                index, frame = next(decoded)
            except StopIteration:
                return
            except av.error.FFmpegError as error:
                raise ValueError(f"{source}: FFmpeg cannot decode it after frame {index} "
                                 f"({error})") from None
            if index % every:
                continue
            time = float(frame.time) if frame.time is not None else index / rate
            yield index, time, torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float().div(255)


def _open(source: str | Path, **open_options: Any) -> Any:
    """``av.open(source)`` with a video stream, or ValueError naming the source and the reason."""
    av = require("av", "video")
    try:
        container = av.open(str(source), **open_options)
    except (av.error.FFmpegError, OSError) as error:
        raise ValueError(f"{source}: FFmpeg cannot open it as a video ({error})") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{source}: expected a video stream, found none")
    return container


def frame_rate(source: str | Path) -> float:
    """The average frames per second of ``source``'s first video stream (30 where unknown)."""
    with _open(source) as container:
        stream = container.streams.video[0]
        return float(stream.average_rate or stream.guessed_rate or 30)


def frame_count(source: str | Path) -> int | None:
    """The number of frames ``source``'s container declares, None where it does not (streams, some codecs)."""
    with _open(source) as container:
        return int(container.streams.video[0].frames) or None


class Tracker:
    """ByteTrack over the frames of one video: ``update(detections)`` adds ``track_id`` (int64 [D]).

    Ids count from 1. A detection the tracker has not confirmed as a track keeps ``track_id = -1`` (ByteTrack
    starts a track on an object's first frame and names it from its second). ``frame_rate`` (of the
    frames given, after ``--every``) sets how long a lost track is remembered (``lost_frames`` frames at 30/s).
    """

    def __init__(self, frame_rate: float = 30.0, lost_frames: int = 30, activation_score: float = 0.5,
                 min_frames: int = 1) -> None:
        trackers = require("trackers", "track")
        self._sv = require("supervision", "track")
        self._tracker = trackers.ByteTrackTracker(
            lost_track_buffer=lost_frames, frame_rate=frame_rate, track_activation_threshold=activation_score,
            minimum_consecutive_frames=min_frames, high_conf_det_threshold=activation_score)

    def update(self, detections: dict[str, Tensor]) -> dict[str, Tensor]:
        """One frame's detections (``boxes``, ``scores``, ``labels``) -> the same with ``track_id``, in the order
        given."""
        boxes = detections["boxes"].float().cpu().numpy().reshape(-1, 4)
        found = self._sv.Detections(xyxy=boxes, confidence=detections["scores"].float().cpu().numpy(),
                                    class_id=detections["labels"].cpu().numpy().astype(int),
                                    data={"index": np.arange(len(boxes))})
        tracked = self._tracker.update(found)
        ids = torch.full((len(boxes),), -1, dtype=torch.int64)
        if len(tracked):
            ids[torch.from_numpy(tracked.data["index"].astype(np.int64))] = torch.from_numpy(
                tracked.tracker_id.astype(np.int64))
            ids = torch.where(ids >= 0, ids + 1, ids)  # from 1, as people count
        return {**detections, "track_id": ids}


def detect(model: Detector, source: str | Path, *, every: int = 1, batch_size: int = 8, track: bool = False,
           tile: int | None = None, overlap: float = 0.25, device: torch.device | str = "cpu",
           **open_options: Any) -> Iterator[Frame]:
    """Detect (and with ``track``, track) objects in every ``every``-th frame of ``source``, ``batch_size``
    frames a forward pass (or each frame by :func:`~ssd_zoo.detect.predict.tiles` of side ``tile``)."""
    tracker = Tracker(frame_rate(source) / every) if track else None
    batch: list[tuple[int, float, Tensor]] = []

    def flush() -> Iterator[Frame]:
        if tile is not None:
            found = [tiles(model, image, tile, overlap, batch_size=batch_size, device=device) for _, _, image in batch]
        else:
            found = images(model, [image for _, _, image in batch], batch_size, device)
        for (index, time, image), det in zip(batch, found):
            yield Frame(index, time, image, tracker.update(det) if tracker else det)
        batch.clear()

    for item in read_frames(source, every, **open_options):
        batch.append(item)
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()


class VideoWriter:
    """Write uint8 ``[3, H, W]`` RGB frames to a video file (H.264 in ``.mp4``/``.mkv``/``.mov``, VP9 in
    ``.webm``, MPEG-4 part 2 otherwise) with PyAV; a context manager. Odd sides are padded by one pixel
    (yuv420p needs even ones)."""

    CODECS = {".webm": "libvpx-vp9", ".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264"}

    def __init__(self, path: str | Path, fps: float) -> None:
        self._av = require("av", "video")
        self.path, self.fps = Path(path), fps
        self._container = self._av.open(str(self.path), mode="w")
        self._stream = None

    def write(self, frame: Tensor) -> None:
        if self._stream is None:
            from fractions import Fraction
            codec = self.CODECS.get(self.path.suffix.lower(), "mpeg4")
            if codec not in self._av.codecs_available:
                codec = "mpeg4"
            self._stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.height, self._stream.width = (s + s % 2 for s in frame.shape[-2:])
            self._stream.pix_fmt = "yuv420p"
        h, w = frame.shape[-2:]
        array = np.zeros((self._stream.height, self._stream.width, 3), dtype=np.uint8)
        array[:h, :w] = frame.permute(1, 2, 0).cpu().numpy()
        for packet in self._stream.encode(self._av.VideoFrame.from_ndarray(array, format="rgb24")):
            self._container.mux(packet)

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
