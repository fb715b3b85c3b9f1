"""A dataset's check before training: what is in it, and every problem with the file it is in.

:func:`check_dataset` reads a VOC folder, COCO JSON or YOLO ``data.yaml`` (any format :func:`read_data` reads)
without stopping at the first bad file, decodes every image once, and returns a :class:`DataReport`:

- per split and class: images, boxes, and the boxes' sizes at the model's input (each image stretched to
  ``input_size x input_size``, or padded to a square first with ``pad_to_square``), as COCO counts them:
  small (area under 32^2 px), medium (under 96^2), large; and images without any box (background images);
- problems (:class:`~ssd_zoo.data.common.Problem`, one line each, naming the file and, for YOLO, the line):
  ``bad-label`` (a line or file that cannot be read), ``unknown-class`` (a class outside the names),
  ``degenerate-box`` (no area once clamped to its image: the datasets drop it), ``unreadable-image`` (missing,
  or not decodable to the end), ``duplicate-image`` (the same bytes as another image, or the same file in
  ``train`` and in ``val``/``test``).

A clean dataset has no problem; background images and tiny boxes are counted, not reported.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ssd_zoo.data.common import Problem
from ssd_zoo.data.records import ImageRecord, read_data

SIZE_LIMITS = (32**2, 96**2)  # COCO's small / medium / large areas, here in pixels of the model's input
SIZE_NAMES = ("small", "medium", "large")


@dataclass
class SplitStats:
    """One split's counts: ``images``, ``background`` (images without a box), per class (``[K]`` lists, in label
    order) ``images_per_class``, ``boxes_per_class`` and ``sizes`` (``[K][3]``: small, medium, large boxes)."""

    images: int
    background: int
    images_per_class: list[int]
    boxes_per_class: list[int]
    sizes: list[list[int]]


@dataclass
class DataReport:
    """What :func:`check_dataset` found: ``source``, ``format``, ``class_names``, ``input_size``, per split
    :class:`SplitStats` and the ``problems``; ``ok`` when there is none."""

    source: str
    format: str
    class_names: tuple[str, ...]
    input_size: int
    splits: dict[str, SplitStats]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        """The counts as text: per split, one row per class."""
        lines = [f"{self.source} ({self.format}): {len(self.class_names)} classes; box sizes at the "
                 f"{self.input_size}x{self.input_size} input (small < 32^2 px <= medium < 96^2 px <= large)"]
        width = max([5, *map(len, self.class_names)])
        for split, stats in self.splits.items():
            lines.append(f"\n{split}: {stats.images} images ({stats.background} without a box), "
                         f"{sum(stats.boxes_per_class)} boxes")
            lines.append(f"  {'class':<{width}} {'images':>7} {'boxes':>7} {'small':>7} {'medium':>7} {'large':>7}")
            for k, name in enumerate(self.class_names):
                row = [stats.images_per_class[k], stats.boxes_per_class[k], *stats.sizes[k]]
                lines.append(f"  {name:<{width}} " + " ".join(f"{n:>7}" for n in row))
        return "\n".join(lines)

    def __str__(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.problem_counts().items())
        plural = "s" if len(self.problems) > 1 else ""
        verdict = "no problems found" if self.ok else f"{len(self.problems)} problem{plural} ({kinds}):"
        return "\n".join([self.table(), "", verdict, *map(str, self.problems)])

    def problem_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for problem in self.problems:
            counts[problem.kind] = counts.get(problem.kind, 0) + 1
        return counts

    def to_dict(self) -> dict:
        """The report as JSON-ready values."""
        return {"source": self.source, "format": self.format, "class_names": list(self.class_names),
                "input_size": self.input_size, "splits": {s: vars(v) for s, v in self.splits.items()},
                "problems": [vars(p) for p in self.problems]}


def _stats(records: list[ImageRecord], num_classes: int, input_size: int, pad_to_square: bool) -> SplitStats:
    images_per_class = [0] * num_classes
    boxes_per_class = [0] * num_classes
    sizes = [[0, 0, 0] for _ in range(num_classes)]
    for record in records:
        if not len(record.labels):
            continue
        width, height = (max(record.width, record.height),) * 2 if pad_to_square else (record.width, record.height)
        scale = torch.tensor([input_size / width, input_size / height])
        extent = (record.boxes[:, 2:] - record.boxes[:, :2]) * scale
        bucket = torch.bucketize(extent.prod(dim=1), torch.tensor(SIZE_LIMITS, dtype=torch.float32), right=True)
        for label, size in zip(record.labels.tolist(), bucket.tolist()):
            boxes_per_class[label - 1] += 1
            sizes[label - 1][size] += 1
        for label in set(record.labels.tolist()):
            images_per_class[label - 1] += 1
    background = sum(1 for record in records if not len(record.labels))
    return SplitStats(len(records), background, images_per_class, boxes_per_class, sizes)


def _image_problems(splits: dict[str, list[ImageRecord]]) -> list[Problem]:
    """Unreadable and duplicate images: every distinct file decoded once and hashed."""
    problems: list[Problem] = []
    first_with: dict[str, Path] = {}
    split_of: dict[Path, str] = {}
    for split, records in splits.items():
        for record in records:
            path = record.path
            if path in split_of:
                if "train" in (split, split_of[path]) and split != split_of[path]:
                    problems.append(Problem("duplicate-image", str(path), None,
                                            f"the same file is in {split_of[path]!r} and in {split!r}"))
                continue
            split_of[path] = split
            try:
                data = path.read_bytes()
                with Image.open(io.BytesIO(data)) as image:
                    image.load()  # decode to the end: a truncated file fails here, not at its header
            except (OSError, ValueError) as err:
                problems.append(Problem("unreadable-image", str(path), None, f"cannot decode the image ({err})"))
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in first_with:
                problems.append(Problem("duplicate-image", str(path), None,
                                        f"the same bytes as {first_with[digest]} ({split_of[first_with[digest]]})"))
            else:
                first_with[digest] = path
    return problems


def check_dataset(path: str | Path, input_size: int = 300, *, pad_to_square: bool = False) -> DataReport:
    """Check every split of the dataset at ``path`` (see the module docstring); ``input_size``: the model's
    input side in pixels. Raises (FileNotFoundError, ValueError) only when ``path`` is no dataset at all
    (nothing there, a malformed ``data.yaml``); anything wrong inside it becomes a problem in the report."""
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size <= 0:
        raise ValueError(f"input_size: expected a positive number of pixels, found {input_size!r}")
    problems: list[Problem] = []
    data = read_data(path, report=problems.append)
    problems = list(dict.fromkeys(problems))  # a label file read for two splits (val and test) is reported once
    problems.extend(_image_problems(data.splits))
    stats = {split: _stats(records, len(data.class_names), input_size, pad_to_square)
             for split, records in data.splits.items()}
    return DataReport(str(path), data.format, data.class_names, input_size, stats, problems)
