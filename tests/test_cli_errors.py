"""Everyday mistakes at the command line, made as a user makes them: each is one line on stderr that names the
program and the file, key or option involved, with exit code 2 and no traceback; ``--debug`` (or
``SSD_ZOO_DEBUG=1``) shows the traceback; programming errors still raise.

Each mistake runs its program's entry function in this process (helpers.run_in_process: what the program's
``__main__`` block calls); one mistake per program, and the ``--debug`` cases, run as real subprocesses, so
that the scripts and ``python -m`` entries are seen to report the same way."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import ROOT, SAMPLES, SHAPES_CONFIG, run_in_process

from ssd_zoo.errors import CheckpointError, CommandLineExit, run_main

CONFIG = str(SHAPES_CONFIG)
TRAIN, EVAL, CLI, SHAPES = "train_voc.py", "eval_voc.py", "ssd-zoo", "python -m ssd_zoo.data.shapes"
COMMANDS = {TRAIN: [str(ROOT / "recipes/train_voc.py")], EVAL: [str(ROOT / "recipes/eval_voc.py")],
            CLI: ["-m", "ssd_zoo.cli"], SHAPES: ["-m", "ssd_zoo.data.shapes"]}  # after `python`


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The broken inputs: a truncated checkpoint, text that is no checkpoint, a state dict of no known layout, a
    bare state dict where a training checkpoint is expected, YAML that does not parse, a picture that is not."""
    from ssd_zoo.data.shapes import generate_shapes_voc

    root = tmp_path_factory.mktemp("broken")
    torch.save({"model": {"w": torch.zeros(2000)}, "iteration": 3}, root / "ok.pth")
    whole = (root / "ok.pth").read_bytes()
    (root / "truncated.pth").write_bytes(whole[: len(whole) // 2])
    (root / "notes.pth").write_text("these are my notes\n")
    torch.save({"weird.key": torch.zeros(3)}, root / "nolayout.pth")
    (root / "bad.yaml").write_text("lr: [0.1\n")
    (root / "list.yaml").write_text("- lr\n- 0.1\n")
    (root / "photo.jpg").write_text("not a picture")
    (root / "afile").write_text("")
    shapes = generate_shapes_voc(root / "shapes", num_train=2, num_test=1, seed=0, sides=(64, 64))
    return {"dir": str(root), "shapes": str(shapes), **{p.stem: str(p) for p in root.iterdir() if p.is_file()}}


def training(*args: str) -> list[str]:
    return ["--config", CONFIG, "--device", "cpu", *args]


# (name, program, its arguments, what stderr must contain besides the program's name)
MISTAKES: list[tuple[str, str, Callable[[dict[str, str]], list[str]], list[str]]] = [
    # the fourteen
    ("resume_missing", TRAIN, lambda f: ["--resume", f"{f['dir']}/gone.pth"], ["gone.pth", "expected a checkpoint"]),
    ("resume_truncated", TRAIN, lambda f: ["--resume", f["truncated"]], ["truncated.pth", "is truncated or corrupt"]),
    ("config_missing", TRAIN, lambda f: ["--config", f"{f['dir']}/gone.yaml"], ["--config", "gone.yaml"]),
    ("config_not_yaml", TRAIN, lambda f: ["--config", f["bad"]], ["bad.yaml", "invalid YAML at line 2"]),
    ("set_unknown_key", TRAIN, lambda f: training("--set", "learning_rate=0.1"),
     ["--set 'learning_rate=0.1'", "key one of"]),
    ("data_root_missing", TRAIN, lambda f: training("--data-root", f"{f['dir']}/nowhere"), ["nowhere", "does not exist"]),
    ("eval_truncated", EVAL, lambda f: ["--config", CONFIG, "--data-root", f["shapes"], "--device", "cpu",
                                        "--weights", f["truncated"]], ["truncated.pth", "is truncated or corrupt"]),
    ("detect_misspelt_model", CLI, lambda f: ["detect", str(SAMPLES), "--model", "ssd300_vgg61"],
     ["unknown model 'ssd300_vgg61'", "ssd300_vgg16"]),
    ("detect_truncated", CLI, lambda f: ["detect", str(SAMPLES), "--weights", f["truncated"]],
     ["truncated.pth", "is truncated or corrupt"]),
    ("detect_missing_path", CLI, lambda f: ["detect", f"{f['dir']}/gone.jpg", "--weights", "none"],
     ["gone.jpg", "found nothing"]),
    ("export_missing_weights", CLI, lambda f: ["export", "ssd300_vgg16", f"{f['dir']}/x.onnx", "--weights",
                                               f"{f['dir']}/gone.pth"], ["gone.pth"]),
    ("convert_unknown_layout", CLI, lambda f: ["convert", f["nolayout"], f"{f['dir']}/out.pth"], ["nolayout.pth"]),
    ("shapes_negative_count", SHAPES, lambda f: [f"{f['dir']}/gen", "--train", "-5"], ["--train", "found -5"]),
    # more
    ("resume_not_a_training_checkpoint", TRAIN, lambda f: ["--resume", f["nolayout"]],
     ["nolayout.pth", "expected a checkpoint written by train_voc.py"]),
    ("resume_text_file", TRAIN, lambda f: ["--resume", f["notes"]], ["notes.pth", "is not a torch checkpoint"]),
    ("config_a_list", TRAIN, lambda f: ["--config", f["list"]], ["list.yaml", "expected a YAML mapping"]),
    ("config_a_folder", TRAIN, lambda f: ["--config", f["dir"]], ["--config", "found a folder"]),
    ("negative_lr", TRAIN, lambda f: training("--set", "lr=-0.1"), ["the command line: lr", "found -0.1"]),
    ("zero_batch", TRAIN, lambda f: training("--batch-size", "0"), ["batch_size", "found 0"]),
    ("zero_iterations", TRAIN, lambda f: training("--max-iters", "0"), ["max_iters", "found 0"]),
    ("momentum_text", TRAIN, lambda f: training("--set", "momentum=fast"), ["momentum", "'fast'"]),
    ("unknown_optimizer", TRAIN, lambda f: training("--set", "optimizer=adam"), ["optimizer", "'adam'"]),
    ("eval_negative_draw", EVAL, lambda f: ["--config", CONFIG, "--weights", "x", "--draw", "-1"], ["--draw", "-1"]),
    ("detect_score_above_one", CLI, lambda f: ["detect", str(SAMPLES), "--score", "1.5"], ["--score", "1.5"]),
    ("detect_zero_batch", CLI, lambda f: ["detect", str(SAMPLES), "--batch-size", "0"], ["--batch-size", "found 0"]),
    ("detect_folder_as_weights", CLI, lambda f: ["detect", str(SAMPLES), "--weights", f["dir"]],
     ["no file exists at", "broken"]),
    ("detect_categories_missing", CLI, lambda f: ["detect", str(SAMPLES), "--weights", "none", "--categories",
                                                  f"{f['dir']}/names.txt"], ["names.txt"]),
    ("convert_text_file", CLI, lambda f: ["convert", f["notes"], f"{f['dir']}/out.pth"], ["notes.pth", "not a torch"]),
    ("shapes_sides", SHAPES, lambda f: [f"{f['dir']}/gen", "--sides", "10", "20"], ["--sides", "found 10 20"]),
    ("shapes_out_is_a_file", SHAPES, lambda f: [f["afile"], "--train", "1"], ["afile", "found a file"]),
]
# One mistake per program made through its real entry (a subprocess): the script or `python -m` module itself.
IN_A_SUBPROCESS = {"config_not_yaml", "eval_negative_draw", "detect_misspelt_model", "shapes_negative_count"}


def run(program: str, args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *COMMANDS[program], *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


@pytest.mark.parametrize("name, program, args, expected", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mistake_is_one_line_naming_what_and_where(files: dict[str, str], name: str, program: str,
                                                     args: Callable[[dict[str, str]], list[str]],
                                                     expected: list[str]) -> None:
    argv = args(files)
    done = run(program, argv) if name in IN_A_SUBPROCESS else run_in_process(program, argv)
    prog = f"ssd-zoo {argv[0]}" if program == CLI else program
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[0].startswith(f"{prog}: "), lines[0]
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"


def test_detect_skips_a_file_that_is_not_an_image(files: dict[str, str], tmp_path: Path) -> None:
    """Not a mistake that stops the command (issue 17: nothing done is lost): the file is reported, named with
    its reason in detections.json, and the exit code (3) says that something was skipped."""
    done = run_in_process(CLI, ["detect", files["photo"], "--weights", "none", "--out", str(tmp_path / "out")])
    assert done.returncode == 3 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-2000:])
    assert "skipped 1 file(s)" in done.stderr
    report = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [Path(s["file"]).name for s in report["skipped"]] == ["photo.jpg"] and report["images"] == []
    assert "not a readable image" in report["skipped"][0]["reason"]


def test_debug_shows_the_traceback(files: dict[str, str]) -> None:
    """``--debug`` in a real subprocess: Python prints the traceback of the exception that leaves the program.
    ``SSD_ZOO_DEBUG=1`` in this process: the exception leaves the entry function (whose traceback Python prints)."""
    done = run(TRAIN, ["--resume", files["truncated"], "--debug"])
    assert done.returncode != 0 and "Traceback (most recent call last)" in done.stderr, done.stderr[-2000:]
    assert "CheckpointError" in done.stderr and "truncated.pth" in done.stderr
    with pytest.raises(CheckpointError, match="truncated.pth"):
        run_in_process(CLI, ["detect", str(SAMPLES), "--weights", files["truncated"]], SSD_ZOO_DEBUG="1")


def test_programming_errors_still_raise(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(argv: list[str]) -> int:
        return [][len(argv)]  # an IndexError: the code's fault, not the user's

    with pytest.raises(IndexError):
        run_main(broken, "prog", [])
    assert capsys.readouterr().err == ""


def test_user_errors_exit_2_in_process_too(capsys: pytest.CaptureFixture[str]) -> None:
    def missing(argv: list[str]) -> int:
        raise FileNotFoundError("expected a file at 'x.pth',\n found nothing there")

    with pytest.raises(CommandLineExit, match="prog: expected a file at 'x.pth', found nothing there") as info:
        run_main(missing, "prog", [])
    assert info.value.code == 2
    assert capsys.readouterr().err == "prog: expected a file at 'x.pth', found nothing there\n"
    assert run_main(lambda argv: 0, "prog", []) == 0
