"""Writing detections where people read them: pictures, an annotated video, JSON and JSON lines.

Every file is written whole or not at all (:func:`ssd_zoo.files.write_atomic`; a video is encoded to a temporary
name and renamed when complete), so an interrupted run never leaves half a file behind.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ssd_zoo.detect.draw import draw_detections
from ssd_zoo.files import write_atomic


def detections_json(detection: dict[str, Tensor], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per detection: ``box`` (xyxy pixels, 2 decimals), ``score``, ``label``, ``name``, and
    ``track_id`` where the detections have one."""
    rows = []
    ids = detection["track_id"].tolist() if "track_id" in detection else None
    for i, (box, score, label) in enumerate(zip(detection["boxes"].tolist(), detection["scores"].tolist(),
                                                detection["labels"].tolist())):
        row = {"box": [round(c, 2) for c in box], "score": round(score, 4), "label": label, "name": class_names[label]}
        if ids is not None:
            row["track_id"] = ids[i]
        rows.append(row)
    return rows


def write_picture(path: Path, image: Tensor, detection: dict[str, Tensor], class_names: Sequence[str],
                  min_score: float = 0.0) -> None:
    """``image`` with ``detection`` drawn (:func:`~ssd_zoo.detect.draw.draw_detections`; detections scored below
    ``min_score`` left out) at ``path``: a PNG where its suffix is ``.png``, else a JPEG."""
    from PIL import Image

    drawn = draw_detections(image, detection, class_names, min_score=min_score)
    picture = Image.fromarray(drawn.permute(1, 2, 0).numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        write_atomic(path, lambda f: picture.save(f, format="PNG"))
    else:
        write_atomic(path, lambda f: picture.save(f, format="JPEG", quality=90))


def write_report(path: Path, report: dict[str, Any]) -> None:
    """``report`` as indented JSON at ``path``, atomically."""
    write_atomic(path, lambda f: f.write(json.dumps(report, indent=1).encode()))


def write_video(frames: Iterable[Any], video_path: Path, lines_path: Path, fps: float,
                class_names: Sequence[str]) -> int:
    """Annotated frames to ``video_path`` and one JSON line per frame (``frame``, ``time`` in seconds,
    ``detections``) to ``lines_path``; ``frames``: :class:`ssd_zoo.detect.video.Frame` s. Returns the frame count.

    Both files are written under temporary names and renamed once complete; the JSON lines are flushed
    frame by frame, so an interrupted run keeps the lines written so far (under ``<name>.part``)."""
    from ssd_zoo.detect.video import VideoWriter

    video_path.parent.mkdir(parents=True, exist_ok=True)
    video_part = video_path.with_name(f".{video_path.stem}.part{video_path.suffix}")
    lines_part = lines_path.with_name(lines_path.name + ".part")
    count = 0
    with VideoWriter(video_part, fps) as writer, open(lines_part, "w") as lines:
        for frame in frames:
            writer.write(draw_detections(frame.image, frame.detections, class_names))
            lines.write(json.dumps({"frame": frame.index, "time": round(frame.time, 4),
                                    "detections": detections_json(frame.detections, class_names)}) + "\n")
            lines.flush()
            count += 1
    os.replace(video_part, video_path)
    os.replace(lines_part, lines_path)
    return count
