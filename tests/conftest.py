"""Shared test fixtures: the real VOC photos in ../shared/samples and small helpers."""
from __future__ import annotations

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
