"""Shared test fixtures: the real VOC photos in ../shared/samples and small helpers."""
from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def load_samples() -> list[torch.Tensor]:
    """The VOC 2007 sample photos as float ``[3, H, W]`` tensors in [0, 1], sorted by file name."""
    paths = sorted(SAMPLES.glob("*.jpg"))
    if not paths:
        pytest.skip(f"no sample photos in {SAMPLES}")
    return [pil_to_tensor(Image.open(p).convert("RGB")).float() / 255 for p in paths]


@pytest.fixture(scope="session")
def sample_images() -> list[torch.Tensor]:
    return load_samples()


_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    """socket.connect that refuses every address but this machine's: tests never reach the network."""
    if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            allowed = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = False
        if not allowed:
            raise ConnectionRefusedError(f"tests may only connect to 127.0.0.1/localhost, not {host!r}")
    return _connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
