"""What several test files share, defined once: the sample photos, the tiny model, the keywords that build every
registered model, the recipes' tiny settings, and running a command-line program in this process.

Test files import from here (``from helpers import ...``; pytest puts ``tests/`` on ``sys.path``), never from one
another; fixtures live in ``conftest.py`` (the session-wide ``built`` model cache among them).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms.functional import pil_to_tensor

import ssd_zoo

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "assets"  # see assets/README.md; test_cli runs `detect` on the folder
SAMPLE_NAMES = ("voc2007_000004.jpg", "voc2007_000017.jpg", "voc2007_000023.jpg")
SHAPES_CONFIG = ROOT / "recipes/configs/shapes_quick.yaml"
# The TF Object Detection API graph the import is checked on (tools/fetch_test_graph.py: `make test` fetches it
# from the package registry), and what TensorFlow computed with it (tools/tf_reference.py, in the repository).
TF_GRAPH = ROOT / "tests" / "data" / "external" / "pedestrian_ssdlite" / "frozen_inference_graph.pb"
TF_REFERENCE = ROOT / "tests" / "data" / "tf_pedestrian_ssdlite.npz"


def load_samples() -> list[Tensor]:
    """The sample photos as float ``[3, H, W]`` tensors in [0, 1], in ``SAMPLE_NAMES`` order (by name).

    They are part of the repository, so a missing one fails the test that wants it (never a skip)."""
    missing = [str(SAMPLES / name) for name in SAMPLE_NAMES if not (SAMPLES / name).is_file()]
    if missing:
        pytest.fail(f"sample photos missing: expected {missing} (see assets/README.md), found no such files")
    return [pil_to_tensor(Image.open(SAMPLES / name).convert("RGB")).float() / 255 for name in SAMPLE_NAMES]


# The tiny model: a 64 px SSD on an 8-channel ResNet-18 (timm, no pretrained weights), three small extra layers.
# TINY_MODEL_KWARGS is what the recipes' ``model_kwargs`` takes, TINY what ``ssd_zoo.build("ssd", ...)`` takes.
TINY_MODEL_KWARGS = {"anchors": "coco", "extra_channels": [16, 16, 16],
                     "timm_kwargs": {"channels": [8, 8, 16, 16], "stem_width": 8}}
TINY = {"backbone": "resnet18", "input_size": 64, "pretrained_backbone": False, **TINY_MODEL_KWARGS}
# The same as one line of YAML, for ``--set model_kwargs=...`` on a recipe's command line.
TINY_YAML = "{anchors: coco, extra_channels: [16, 16, 16], timm_kwargs: {channels: [8, 8, 16, 16], stem_width: 8}}"


def tiny_model(num_classes: int = 3, seed: int = 0, **kwargs: object) -> ssd_zoo.SSD:
    """The tiny SSD (``TINY``, train mode), its weights drawn after ``torch.manual_seed(seed)``; ``kwargs``
    override ``TINY`` or reach the builder."""
    torch.manual_seed(seed)
    return ssd_zoo.build("ssd", num_classes=num_classes, **{**TINY, **kwargs})


def tiny_detector() -> ssd_zoo.SSD:
    """The tiny SSD for 2 classes (circle, square), trained-looking and in eval mode: random weights with the
    head's convs scaled by 0.3, so that scores spread over the classes as a trained model's do (a random head
    scores every class about alike)."""
    model = tiny_model(num_classes=3)
    with torch.no_grad():
        for conv in model.head.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight.mul_(0.3)
    model.categories = ["__background__", "circle", "square"]
    return model.eval()


# Every registered model is built for NUM_CLASSES (4 foreground: test_surgery.py names them) with BUILD_KWARGS,
# once a session (conftest.built), by test_registry_models.py, test_compile.py and test_surgery.py.
NUM_CLASSES = 5
# Builders that need an argument to build at all: the generic timm ones take the backbone by name.
BUILD_KWARGS: dict[str, dict[str, object]] = {
    "ssd": {"backbone": "resnet10t", "input_size": 128},
    "ssd300": {"backbone": "resnet10t"},
    "ssd512": {"backbone": "resnet10t"},
    "ssdlite320": {"backbone": "mobilenetv3_small_050"},
}


def tiny_args(root: Path, out: Path, *extra: str, **settings: str) -> list[str]:
    """train_voc.py's arguments for the tiny model on a shapes split at ``root``: 2 images a step, lr constant
    after a 3-iteration warm-up, a checkpoint every 2 iterations; ``settings`` override (``--set KEY=VALUE``)."""
    settings = {
        "model_kwargs": TINY_YAML,
        "input_size": "64", "batch_size": "2", "base_batch_size": "2", "num_workers": "0", "tensorboard": "false",
        "schedule": "multistep", "lr_steps": "[100]", "warmup_iters": "3", "lr": "0.001", "log_every": "1",
        "checkpoint_every": "2", "eval_batch_size": "3", "draw": "0", "augment": "{zoom_out: 2.0}", **settings,
    }
    sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    return ["--config", str(SHAPES_CONFIG), "--data-root", str(root), "--output-dir", str(out), "--device", "cpu",
            *sets, *extra]


def checkpoint_weights(path: Path) -> dict[str, Tensor]:
    """The model's state dict inside a training checkpoint (``{"model": ...}``) written by train_voc.py."""
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def save_hashed(state: dict, folder: Path, stem: str) -> tuple[Path, str]:
    """Save ``state`` as ``<stem>-<first 10 hex digits of its sha256>.pth``; returns (path, prefix)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{stem}.tmp"
    torch.save(state, tmp)
    prefix = hashlib.sha256(tmp.read_bytes()).hexdigest()[:10]
    return tmp.rename(folder / f"{stem}-{prefix}.pth"), prefix


SCORE_RTOL = 1e-5  # two float32 SSDs' scores agree to ~6e-6 relative; two scores closer than 2 x this may swap


def at_the_cut(scores: Tensor, limit: int) -> Tensor:
    """``[D]`` bool: the scores that tie with the last one kept when ``limit`` detections were kept, i.e. the
    detections of which only some made the cut, arbitrarily."""
    if len(scores) < limit:
        return torch.zeros(len(scores), dtype=torch.bool)
    return scores <= scores[-1] * (1 + 2 * SCORE_RTOL)


# --- command-line programs, run in this process --------------------------------------------------------------

@dataclass
class Done:
    """What a program run left: its exit code and what it wrote (as ``subprocess.CompletedProcess`` has them)."""
    returncode: int
    stdout: str
    stderr: str


def _program(name: str) -> Callable[[list[str]], object]:
    """The function each program's ``if __name__ == "__main__":`` block calls, as ``argv -> exit code``."""
    from ssd_zoo.errors import run_main

    if name == "ssd-zoo":
        from ssd_zoo.cli import main

        return main
    if name == "python -m ssd_zoo.data.shapes":
        from ssd_zoo.data import shapes

        return lambda argv: run_main(shapes.main, name, argv)
    if str(ROOT) not in sys.path:  # recipes/ is a folder of scripts beside the package
        sys.path.insert(0, str(ROOT))
    if name == "train_voc.py":
        from recipes import train_voc

        return lambda argv: run_main(train_voc.train, name, argv, expected=(train_voc.NonFiniteLoss,))
    if name == "eval_voc.py":
        from recipes import eval_voc

        return lambda argv: run_main(eval_voc.main, name, argv)
    raise ValueError(f"expected a program among ssd-zoo, python -m ssd_zoo.data.shapes, train_voc.py, "
                     f"eval_voc.py; found {name!r}")


def run_in_process(program: str, argv: Sequence[str], **env: str) -> Done:
    """Run ``program`` (``"ssd-zoo"``, ``"train_voc.py"``, ``"eval_voc.py"`` or ``"python -m
    ssd_zoo.data.shapes"``) on ``argv`` here, as its console entry does, with ``env`` added to the environment:
    the exit code (``SystemExit``'s, 0 on a plain return) and what it printed. Warnings that a user would see
    (all but the deprecation kinds Python hides outside ``__main__``) count as lines of stderr; an exception
    that is no ``SystemExit`` (a programming error) propagates. Torch's thread count is restored after."""
    main = _program(program)
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            warnings.simplefilter("default")
            try:
                result = main(list(argv))
                code = result if isinstance(result, int) else 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
                if isinstance(stop.code, str):  # what Python prints for SystemExit("text")
                    print(stop.code, file=sys.stderr)
    finally:
        torch.set_num_threads(threads)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    shown = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught
             if not issubclass(w.category, hidden)]
    return Done(code, out.getvalue(), err.getvalue() + "".join(f"{line}\n" for line in shown))
