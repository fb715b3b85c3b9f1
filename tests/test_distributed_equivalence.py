"""torchrun with two processes of batch B trains the same model as one process of batch 2B (docs/recipes.md:
"8 per GPU = the same global batch 32, same lr and schedule"), and the two processes see different images.

Why it holds: each process takes a disjoint half of every global batch (``ResumableSampler``, a
``DistributedSampler``), an image's augmentation depends only on ``(seed, epoch, index)``, lr and iterations
scale with the global batch, and DistributedDataParallel averages the two processes' gradients. That average
equals the one-process gradient only under two conditions, which the run below sets up:

- no BatchNorm: its statistics are per process (``sync_bn`` needs CUDA), so the tiny ResNet-18 here uses
  GroupNorm of one group, whose statistics are per image;
- objects that a horizontal flip maps onto themselves, so that augmentation keeps the matched default boxes
  the same whichever process draws which flip. Their number differs between images (one or two), so the two
  processes' halves hold different numbers of matched default boxes: the loss divides by the count of the
  whole global batch (all-reduced), not by each process's own, or the average of ``S0 / N0`` and ``S1 / N1``
  would differ from one process's ``(S0 + S1) / (N0 + N1)``.

What is left is float rounding: the gloo all-reduce adds the two halves' gradients in another order than one
backward pass over the whole batch does, and convolutions over 2 or 4 images accumulate differently. Measured
here: losses agree to ~2e-7 relative, weights to within 5e-5 of how far training moves them (the stem's
gradient, a sum over every pixel with much cancellation, is the least exact). So the tolerances are set against
what other data changes: a control run on the same images in steps of 2 (other batches, the same lr) ends up
about as far from the one-process run as training moved the weights at all, and its losses differ by 0.2-8%.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_MODEL_KWARGS, run_in_process
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssd_zoo.train.data import ResumableSampler  # noqa: E402

TRAIN = ROOT / "recipes" / "train_voc.py"
SIDE = 64
BOX = (16, 16, 48, 48)  # 0-based xyxy; a horizontal flip (x -> 64 - x) maps it onto itself
SECOND_BOX = (8, 50, 56, 62)  # in every third image: another object, also flip-symmetric
CLASSES = ("patch", "other_patch")
ITERATIONS = 4  # two epochs of 8 images at a global batch of 4

CONFIG = f"""
model: ssd
backbone: resnet18
input_size: {SIDE}
model_kwargs: {json.dumps({**TINY_MODEL_KWARGS, "timm_kwargs": {**TINY_MODEL_KWARGS["timm_kwargs"], "norm_layer": "groupnorm1"}})}
train_splits: 2007-trainval
test_split: 2007-test
augment: {{zoom_out: 1.0, iou_crop: false, photometric_p: 0.0, hflip_p: 0.5}}
num_workers: 0
base_batch_size: 4
optimizer: sgd
lr: 0.05
momentum: 0.9
weight_decay: 0.0005
schedule: multistep
lr_steps: [100]
warmup_iters: 0
device: cpu
seed: 0
threads: 1
log_every: 1
checkpoint_every: 100
eval_every: 0
eval_batch_size: 2
draw: 0
tensorboard: false
"""


def write_voc(root: Path, num_train: int = 8, num_test: int = 2) -> Path:
    """A VOCdevkit folder: 64 px noise images, each with one flat patch of its own colour at ``BOX`` (and every
    third one a second at ``SECOND_BOX``)."""
    rng = np.random.default_rng(0)
    year = root / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / sub).mkdir(parents=True)
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    for split, count in (("trainval", num_train), ("test", num_test)):
        ids = [f"{split}_{i}" for i in range(count)]
        for i, image_id in enumerate(ids):
            pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
            boxes = [(BOX, CLASSES[i % 2])] + ([(SECOND_BOX, CLASSES[(i + 1) % 2])] if i % 3 == 0 else [])
            objects = ""
            for (x1, y1, x2, y2), name in boxes:
                pixels[y1:y2, x1:x2] = rng.integers(0, 256, 3, dtype=np.uint8)
                objects += (f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
                            f"<ymin>{y1 + 1}</ymin><xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox></object>")
            Image.fromarray(pixels).save(year / "JPEGImages" / f"{image_id}.jpg", quality=95)
            (year / "Annotations" / f"{image_id}.xml").write_text(  # VOC's XML is 1-based
                f"<annotation><filename>{image_id}.jpg</filename><size><width>{SIDE}</width><height>{SIDE}</height>"
                f"<depth>3</depth></size>{objects}</annotation>")
        (year / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def train(command: list[str] | None, config: Path, data: Path, out: Path, batch_size: int, *sets: str) -> list[dict]:
    """Run ``command`` + the recipe's flags (``None``: the recipe in this process, as its ``__main__`` runs it;
    the config sets one thread, as OMP_NUM_THREADS=1 does for the subprocesses); returns the training records
    of ``out/log.jsonl``."""
    args = ["--config", str(config), "--data-root", str(data), "--output-dir", str(out),
            "--batch-size", str(batch_size), "--max-iters", str(ITERATIONS), *(a for s in sets for a in ("--set", s))]
    if command is None:
        done = run_in_process("train_voc.py", args)
    else:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run([*command, str(TRAIN), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r for r in records if r["split"] == "train"]


def final_state(out: Path) -> dict:
    return torch.load(out / "last.pth", map_location="cpu", weights_only=True)


def test_two_processes_train_as_one_with_their_global_batch(tmp_path: Path) -> None:
    data = write_voc(tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = train(torchrun, config, data, tmp_path / "two", 2)
    one = train(None, config, data, tmp_path / "one", 4)
    # The control: one process, steps of 2 images, the same lr: how far other batches of the same images take
    # the weights. Two processes that saw the same images, or did not average, would be about as far off.
    other = train(None, config, data, tmp_path / "other", 2, "base_batch_size=2")

    assert [r["iteration"] for r in two] == [r["iteration"] for r in one] == list(range(1, ITERATIONS + 1))
    for a, b in zip(two, one):  # the two processes' mean loss, then the one process's loss of the same images
        for key in ("loss", "bbox_regression", "classification", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), f"iteration {a['iteration']}, {key}"
    assert one[-1]["loss"] < 0.9 * one[0]["loss"]  # the weights moved: the comparison is about the updates
    assert max(abs(c["loss"] - b["loss"]) / b["loss"] for b, c in zip(one, other)) > 1e-2  # other batches show

    two, one, other = (final_state(tmp_path / run) for run in ("two", "one", "other"))
    assert [s["config"]["batch_size"] for s in (two, one)] == [2, 4]  # per process
    assert two["config"]["lr"] == one["config"]["lr"] == other["config"]["lr"]
    assert not any("running_mean" in key for key in one["model"])  # no BatchNorm
    for key, value in one["model"].items():  # two processes: 100x closer to one than other batches are
        if not isinstance(value, torch.Tensor):  # a record stored with the weights, not a weight
            assert two["model"][key] == value, key
            continue
        rounding = float((two["model"][key] - value).abs().max())
        data_effect = float((other["model"][key] - value).abs().max())  # 0 where no gradient reaches
        assert rounding <= 0.01 * data_effect, (
            f"{key}: two processes end {rounding:.3g} from one process, other batches {data_effect:.3g}")


@pytest.mark.parametrize("size", [8, 9])  # 9: DistributedSampler drops one image so that the halves are equal
def test_processes_take_disjoint_halves_of_each_global_batch(size: int) -> None:
    """Rank r's k-th batch of B, together with the other rank's, is one process's k-th batch of 2B."""
    batch = 2
    for epoch in range(3):
        samplers = [ResumableSampler(range(size), num_replicas=n, rank=r, seed=0) for n, r in ((1, 0), (2, 0), (2, 1))]
        for sampler in samplers:
            sampler.set_epoch(epoch)
        alone, rank0, rank1 = (list(s) for s in samplers)
        assert not set(rank0) & set(rank1), f"epoch {epoch}: both processes got {sorted(set(rank0) & set(rank1))}"
        assert len(rank0) == len(rank1) == size // 2
        for k in range(size // 2 // batch):
            halves = rank0[k * batch : (k + 1) * batch] + rank1[k * batch : (k + 1) * batch]
            assert sorted(halves) == sorted(alone[k * 2 * batch : (k + 1) * 2 * batch]), f"epoch {epoch}, batch {k}"
