"""Detection over what a user points at: image files, folders, videos and streams, every result written.

    >>> report = detect_sources(model, ["photos/", "clip.mp4"], Path("out"), class_names)
    >>> report["images"][0]["detections"]        # [{"box": [x0, y0, x1, y1], "score": s, "label": l, "name": n}]

Nothing done is lost: a file that is no readable image or video is reported in ``report["skipped"]`` and the
others go on; each picture, video and JSON lines file gets a name of its own
(:func:`~ssd_zoo.detect.predict.output_names`), and ``detections.json`` is written (atomically) even when a
later input fails. ``ssd-zoo detect`` is this function with its options.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ssd_zoo.detect import predict, results, video
from ssd_zoo.detect.predict import IMAGE_SUFFIXES, Detector, find_images
from ssd_zoo.detect.video import VIDEO_SUFFIXES

Sources = tuple[list[tuple[Path, Path]], list[tuple[Path, Path]], list[str]]


def is_stream(item: str) -> bool:
    """A network stream (``rtsp://...``, ``http://...``) or a capture device (``/dev/video0``)."""
    return "://" in item or item.startswith("/dev/video")


def split_sources(items: Sequence[str]) -> Sources:
    """``(images, videos, streams)``: ``(path, name relative to its folder)`` pairs for files found in
    ``items`` (folders searched recursively), stream URLs and devices as given. FileNotFoundError for a path
    that does not exist, ValueError where nothing to detect was found."""
    streams = [item for item in items if is_stream(item)]
    found = find_images([item for item in items if not is_stream(item)], IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    videos = [(p, n) for p, n in found if p.suffix.lower() in VIDEO_SUFFIXES]
    images = [(p, n) for p, n in found if p.suffix.lower() not in VIDEO_SUFFIXES]
    if not (images or videos or streams):
        raise ValueError(f"expected images, videos or streams, found none in {list(items)}")
    return images, videos, streams


def stream_name(url: str) -> str:
    """A file name for a stream's outputs: ``rtsp://host/cam`` -> ``rtsp_host_cam``."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in url).strip("_") or "stream"


def detect_sources(model: Detector, sources: Sources, out: Path, class_names: Sequence[str], *,
                   batch_size: int = 4, tile: int | None = None, overlap: float = 0.25, whole: bool = True,
                   every: int = 1, track: bool = False, device: torch.device | str = "cpu",
                   report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Detect in every source of :func:`split_sources`; write pictures, annotated videos, JSON lines and
    ``out/detections.json``; return that report.

    Report keys: everything in ``report`` (e.g. the model's name and thresholds), ``box_format``, ``images``
    (``file``, ``picture``, ``height``, ``width``, ``detections``), ``videos`` (``file``, ``video``, ``frames``,
    ``detected_frames``, ``every``, ``track``) and ``skipped`` (``file``, ``reason``).
    """
    images, videos, streams = sources
    out.mkdir(parents=True, exist_ok=True)
    report = {**(report or {}), "box_format": "xyxy, pixels of the original image", "images": [], "videos": [],
              "skipped": []}
    pictures = dict(zip([p for p, _ in images], predict.output_names([n for _, n in images], ".jpg")))
    try:
        found = predict.files(model, [p for p, _ in images], batch_size, tile, overlap, whole, device)
        for item in tqdm(found, total=len(images), desc="images", unit="image", disable=not images):
            if isinstance(item, predict.Skipped):
                report["skipped"].append({"file": str(item.path), "reason": item.reason})
                tqdm.write(f"skipped {item.reason}")
                continue
            path, image, detection = item
            results.write_picture(out / pictures[path], image, detection, class_names)
            report["images"].append({"file": str(path), "picture": str(pictures[path]), "height": image.shape[1],
                                     "width": image.shape[2],
                                     "detections": results.detections_json(detection, class_names)})
        stems = predict.output_names([n for _, n in videos] + [Path(stream_name(s)) for s in streams], ".mp4")
        for source, name in zip([p for p, _ in videos] + streams, stems):
            _detect_video(model, source, out, name, class_names, report, batch_size=batch_size, tile=tile,
                          overlap=overlap, every=every, track=track, device=device)
    finally:
        results.write_report(out / "detections.json", report)
    return report


def _detect_video(model: Detector, source: Path | str, out: Path, name: Path, class_names: Sequence[str],
                  report: dict[str, Any], *, batch_size: int, tile: int | None, overlap: float, every: int,
                  track: bool, device: torch.device | str) -> None:
    """One video: ``out/<name>.mp4`` annotated, ``out/<name>.jsonl``; one FFmpeg cannot read goes to ``skipped``."""
    try:
        fps, total = video.frame_rate(source) / every, video.frame_count(source)
        frames = video.detect(model, source, every=every, batch_size=batch_size, track=track, tile=tile,
                              overlap=overlap, device=device)
        bar = tqdm(frames, total=None if total is None else -(-total // every), desc=str(name), unit="frame")
        count = results.write_video(bar, out / name, out / name.with_suffix(".jsonl"), fps, class_names)
    except ValueError as error:  # FFmpeg cannot open or decode it
        report["skipped"].append({"file": str(source), "reason": str(error)})
        tqdm.write(f"skipped {error}")
        return
    report["videos"].append({"file": str(source), "video": str(name), "frames": str(name.with_suffix(".jsonl")),
                             "detected_frames": count, "every": every, "track": track})
