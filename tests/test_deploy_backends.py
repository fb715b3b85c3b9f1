"""Exported files in their own runtimes: ONNX (fp32, int8 QDQ) in onnxruntime, OpenVINO IR (fp32, int8 NNCF),
each against the eager model; the file's metadata makes it self-describing; clear errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from helpers import SAMPLES, run_in_process, tiny_detector, tiny_model

from ssd_zoo.cli import main
from ssd_zoo.deploy.export import export
from ssd_zoo.deploy.runtime import load_runner

pytest.importorskip("onnxruntime")
pytest.importorskip("timm")


def _matched(expected: list[dict], found: list[dict], top: int = 10) -> float:
    """Share of each image's best ``top`` eager detections that ``found`` has (same label, IoU >= 0.5)."""
    from torchvision.ops import box_iou

    hits = total = 0
    for e, f in zip(expected, found):
        boxes, labels = e["boxes"][:top], e["labels"][:top]
        overlap = box_iou(boxes, f["boxes"]) * (labels[:, None] == f["labels"][None, :])
        hits += int((overlap.max(dim=1).values >= 0.5).sum()) if overlap.numel() else 0
        total += len(labels)
    return hits / total


@pytest.mark.parametrize("backend,int8", [("onnxruntime", False), ("onnxruntime", True),
                                          ("openvino", False), ("openvino", True)])
def test_exported_file_matches_eager(sample_images, tmp_path: Path, backend: str, int8: bool) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")
        pytest.importorskip("nncf")
    model = tiny_detector()
    model.score_thresh = 0.2
    with torch.no_grad():
        expected = model(sample_images)
    path = tmp_path / ("model.xml" if backend == "openvino" else "model.onnx")
    export(model, path, format="openvino" if backend == "openvino" else "onnx", int8=int8,
           calibration_images=sample_images * 4)
    run = load_runner(path, precision="f32")
    assert run.categories == model.categories and run.input_size == model.input_size and run.model_name == "ssd"
    assert run.precision.startswith("int8") == int8 and ("fp32" in run.precision) == (backend == "openvino" or not int8)
    found = run(sample_images)
    assert all(len(e["scores"]) > 3 for e in expected), "the test wants detections to compare"
    if not int8:  # fp32: the same detections, to float tolerance
        for e, f in zip(expected, found):
            assert torch.equal(e["labels"], f["labels"])
            torch.testing.assert_close(f["boxes"], e["boxes"], atol=1e-2, rtol=0)
            torch.testing.assert_close(f["scores"], e["scores"], atol=1e-4, rtol=0)
    else:  # int8: most of the best eager detections found again
        assert _matched(expected, found) >= 0.7



@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_letterboxed_model_is_letterboxed_by_its_runner(sample_images, tmp_path: Path, backend: str) -> None:
    """The file's record says how the model resizes: a model trained on letterboxed images (the demo's) gets
    them from the runner too, with its padding colour, so the 500x375 photos give the eager detections."""
    from ssd_zoo.transform import SSDTransform

    model = tiny_detector()
    model.score_thresh = 0.2
    t = model.transform
    model.transform = SSDTransform(t.size, tuple(t.mean.flatten().tolist()), tuple(t.std.flatten().tolist()),
                                   resize="letterbox", pad_fill=(0.5, 0.5, 0.5))
    with torch.no_grad():
        expected = model(sample_images)
    path = export(model, tmp_path / ("model.xml" if backend == "openvino" else "model.onnx"),
                  format="openvino" if backend == "openvino" else "onnx")
    run = load_runner(path, precision="f32")
    assert run.transform.resize_mode == "letterbox" and run.transform.pad_fill == pytest.approx([0.5] * 3)
    for e, f in zip(expected, run(sample_images)):  # the best 50 (near-equal scores further down may swap)
        assert len(e["labels"]) > 50 and torch.equal(e["labels"][:50], f["labels"][:50])
        torch.testing.assert_close(f["boxes"][:50], e["boxes"][:50], atol=1e-2, rtol=0)

def test_cli_export_and_detect_with_a_backend(tmp_path: Path) -> None:
    model = tiny_detector()
    torch.save({"model": model.state_dict()}, tmp_path / "tiny.pth")
    image = str(sorted(SAMPLES.glob("*.jpg"))[0])
    assert main(["export", "ssd", str(tmp_path / "tiny.onnx"), "--weights", str(tmp_path / "tiny.pth")]) == 0
    reports = {}
    for backend, file in (("torch", "tiny.pth"), ("onnxruntime", "tiny.onnx")):
        out = tmp_path / backend
        assert main(["detect", image, "--backend", backend, "--model-file", str(tmp_path / file), "--score", "0.2",
                     "--out", str(out)]) == 0
        reports[backend] = json.loads((out / "detections.json").read_text())
        assert (out / Path(image).with_suffix(".jpg").name).is_file()
    theirs, ours = (reports[b]["images"][0]["detections"] for b in ("torch", "onnxruntime"))
    assert len(ours) == len(theirs) > 0 and [d["name"] for d in ours] == [d["name"] for d in theirs]
    assert all(abs(a - b) < 0.05 for d, e in zip(ours, theirs) for a, b in zip(d["box"], e["box"]))


def test_cli_export_int8_says_which_backend_and_why(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ssd_zoo.deploy.quantize import choose_backend

    torch.save({"model": tiny_model().state_dict()}, tmp_path / "tiny.pth")
    assert main(["export", "ssd", str(tmp_path / "tiny.onnx"), "--weights", str(tmp_path / "tiny.pth"), "--int8",
                 "--calibration", str(SAMPLES), "--calibration-count", "2"]) == 0
    best, reason = choose_backend(among=("openvino", "onnxruntime"))
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("int8: "))
    assert line.startswith("int8: onnxruntime (static QDQ, --format onnx)") and f"{best} ({reason})" in line
    assert line.endswith("--format openvino writes it") == (best == "openvino")
    assert load_runner(tmp_path / "tiny.onnx").precision == "int8 (QDQ)"


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    model = tiny_detector()
    export(model, tmp_path / "tiny.onnx")
    torch.save({"model": model.state_dict()}, tmp_path / "tiny.pth")
    (tmp_path / "photos").mkdir()
    image = str(sorted(SAMPLES.glob("*.jpg"))[0])
    cases = {
        ("detect", image, "--backend", "onnxruntime", "--model-file", str(tmp_path / "tiny.onnx"), "--model",
         "ssd300_vgg16"): "holds model 'ssd', not --model 'ssd300_vgg16'",
        ("export", "ssd", str(tmp_path / "x.onnx"), "--weights", str(tmp_path / "tiny.pth"), "--int8",
         "--calibration", str(tmp_path / "photos")): "no .jpg",
        ("export", "ssd300_vgg16", str(tmp_path / "x.onnx"), "--weights", str(tmp_path / "tiny.pth")):
            "holds model 'ssd', not 'ssd300_vgg16'",
        ("detect", image, "--backend", "openvino", "--model-file", str(tmp_path / "missing.xml")): "missing.xml",
    }
    for args, message in cases.items():  # through the console script's function, in this process
        done = run_in_process("ssd-zoo", args)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(ImportError, match=r"openvino is not installed .*pip install 'ssd_zoo\[openvino\]'"):
        export(tiny_detector(), tmp_path / "x.xml", format="openvino")
    assert not list(tmp_path.iterdir())
