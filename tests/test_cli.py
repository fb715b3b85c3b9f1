"""The ssd-zoo command line: list, detect (pictures + JSON on the sample photos), convert."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from helpers import SAMPLES, TINY, run_in_process
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

import ssd_zoo
from ssd_zoo.models.record import split_record
from ssd_zoo.weights import convert
from ssd_zoo.cli import main
from ssd_zoo.detect.draw import upscale_factor

REPO = Path(__file__).resolve().parents[1]
PERSON = 15  # VOC label


def test_pyproject_declares_the_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ssd-zoo"] == "ssd_zoo.cli:main"


def test_list_shows_models_weights_and_published_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "ssd*_vgg16", "-v"]) == 0
    out = capsys.readouterr().out
    assert "VOC0712 (DEFAULT)" in out and "VOC2007-test mAP 77.43" in out and "ssd.pytorch" in out
    assert "COCO_V1" in out and "COCO-val2017 box_map 25.1" in out and "ssd512_vgg16  -" in out
    assert "https://github.com/amdegroot/ssd.pytorch#performance" in out


@pytest.fixture(scope="module")
def person_checkpoint(tmp_path_factory: pytest.TempPathFactory, built) -> Path:
    """An ssd300_vgg16 checkpoint whose head says "person" everywhere (random weights score all classes alike)."""
    model = built("ssd300_vgg16")
    with torch.no_grad():
        for conv in model.head.classification:
            conv.bias.view(-1, model.num_classes)[:, PERSON] = 8.0  # channel = box * C + class
    path = tmp_path_factory.mktemp("ckpt") / "person.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


def test_detect_writes_pictures_and_json(person_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = sorted(SAMPLES.glob("*.jpg"))
    assert photos, f"no sample photos in {SAMPLES}"  # they ship in assets/: missing is a failure
    out = tmp_path / "out"
    assert main(["detect", str(SAMPLES), "--weights", str(person_checkpoint), "--score", "0.5", "--out", str(out),
                 "--categories", "voc", "--batch-size", "3"]) == 0
    assert f"{len(photos)} images" in capsys.readouterr().out
    report = json.loads((out / "detections.json").read_text())
    assert report["model"] == "ssd300_vgg16" and report["score_thresh"] == 0.5
    assert [Path(r["file"]).name for r in report["images"]] == [p.name for p in photos]
    for photo, result in zip(photos, report["images"]):
        original = pil_to_tensor(Image.open(photo).convert("RGB"))
        drawn = pil_to_tensor(Image.open(out / photo.name).convert("RGB"))
        assert original.shape == (3, result["height"], result["width"])
        factor = upscale_factor(*original.shape[-2:])  # small photos are drawn larger, for legible labels
        assert drawn.shape == (3, factor * result["height"], factor * result["width"])
        original = original.repeat_interleave(factor, 1).repeat_interleave(factor, 2)
        assert result["detections"], photo.name
        for det in result["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert det["name"] == "person" and det["label"] == PERSON and det["score"] > 0.5
            assert 0 <= x1 < x2 <= result["width"] + 0.01 and 0 <= y1 < y2 <= result["height"] + 0.01
        assert (drawn.int() - original.int()).abs().sum() > 0  # boxes were drawn


def test_detect_names_what_it_could_not_find(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="expected an image file or a folder, found nothing at .*nowhere.jpg"):
        main(["detect", str(tmp_path / "nowhere.jpg"), "--weights", "none"])


def test_convert_subcommand(tmp_path: Path, built) -> None:
    """Through `python -m ssd_zoo.cli` in a subprocess: the console entry runs a command to its end."""
    state, _ = split_record(built("ssd300_vgg16", num_classes=4).state_dict())
    torch.save(convert.to_ssd_pytorch(state, input_order="bgr"), tmp_path / "bgr.pth")
    done = subprocess.run([sys.executable, "-m", "ssd_zoo.cli", "convert", "--input-order", "bgr",
                           str(tmp_path / "bgr.pth"), str(tmp_path / "zoo.pth")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    back = torch.load(tmp_path / "zoo.pth", weights_only=True)
    assert all(torch.equal(back[k], v) for k, v in state.items())


def test_detect_never_overwrites_a_picture(tmp_path: Path) -> None:
    """Two inputs with one stem (``a/photo.jpg``, ``b/photo.png``) give two pictures; files are written whole."""
    photo = sorted(SAMPLES.glob("*.jpg"))[0]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "photo.jpg").write_bytes(photo.read_bytes())
    Image.open(photo).save(tmp_path / "b" / "photo.png")
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "a"), str(tmp_path / "b"), "--weights", "none", "--out", str(out)]) == 0
    report = json.loads((out / "detections.json").read_text())
    assert [r["picture"] for r in report["images"]] == ["photo.jpg.jpg", "photo.png.jpg"]  # each keeps its suffix
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "photo.jpg.jpg", "photo.png.jpg"]  # no temporary files


def test_convert_onto_its_own_input(tmp_path: Path, built) -> None:
    state, _ = split_record(built("ssd300_vgg16", num_classes=4).state_dict())
    path = tmp_path / "net.pth"
    torch.save(convert.to_ssd_pytorch(state), path)
    assert main(["convert", str(path), str(path)]) == 0  # ssd.pytorch -> ssd_zoo, in place
    back = torch.load(path, weights_only=True)
    assert all(torch.equal(back[k], v) for k, v in state.items()) and list(tmp_path.iterdir()) == [path]


def test_detect_rebuilds_a_model_from_its_checkpoint_alone(tmp_path: Path) -> None:
    """What the demo teaches next: its checkpoint (a generic 'ssd' on a timm backbone) in ssd-zoo detect, no --model."""
    model = ssd_zoo.build("ssd", num_classes=3, **TINY)
    model.categories = ["__background__", "circle", "square"]
    torch.save({"model": model.state_dict(), "iteration": 4}, tmp_path / "last.pth")  # as train_voc.py writes it
    out = tmp_path / "out"
    assert main(["detect", str(sorted(SAMPLES.glob("*.jpg"))[0]), "--weights", str(tmp_path / "last.pth"),
                 "--score", "0.2", "--out", str(out)]) == 0
    report = json.loads((out / "detections.json").read_text())
    assert report["model"] == "ssd" and report["weights"] == str(tmp_path / "last.pth")
    assert {d["name"] for r in report["images"] for d in r["detections"]} <= {"circle", "square"}


def test_command_errors_are_one_line(tmp_path: Path) -> None:
    """In this process, through the console script's function (test_cli_errors.py runs it as a subprocess)."""
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    for args in (["detect", str(SAMPLES), "--weights", str(tmp_path / "broken.pth")],
                 ["detect", str(SAMPLES), "--model", "ssd", "--weights", "none"],
                 ["detect", str(SAMPLES), "--weights", "VOC07"]):
        done = run_in_process("ssd-zoo", args)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("ssd-zoo detect: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
