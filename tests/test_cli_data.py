"""``ssd-zoo data convert`` and ``ssd-zoo data-check``: what they write and print, and their exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssd_zoo.cli import main
from ssd_zoo.data.formats import open_dataset
from ssd_zoo.data.shapes import generate_shapes_voc


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes_voc(tmp_path_factory.mktemp("cli_data") / "voc", 3, 2, seed=4, sides=(48, 64))


def test_convert_then_check(shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "yolo"
    assert main(["data", "convert", str(shapes), str(out), "--to", "yolo"]) == 0
    assert f"({'voc'}) -> {out} (yolo): splits train, val, test" in capsys.readouterr().out
    assert len(open_dataset(out, "train")) == 3
    assert main(["data-check", str(out), "--input-size", "128", "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "box sizes at the 128x128 input" in printed and "no problems found" in printed
    assert json.loads((tmp_path / "r.json").read_text())["problems"] == []
    assert main(["data", "check", str(out)]) == 0


def test_check_exits_1_on_problems_and_prints_one_line_each(shapes: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "yolo"
    main(["data", "convert", str(shapes), str(out), "--to", "yolo"])
    label = out / "labels" / "train" / "train_000001.txt"
    label.write_text(label.read_text() + "0 0.5 0.5\n")
    capsys.readouterr()
    assert main(["data-check", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    number = len(label.read_text().splitlines())
    assert lines[-2:] == ["1 problem (1 bad-label):",
                          f"{label}:{number}: bad-label: expected 5 fields 'class cx cy w h', found 3"]


def test_user_errors_exit_2_in_one_line(shapes: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(SystemExit, match="taken already exists; expected a new") as info:
        main(["data", "convert", str(shapes), str(tmp_path / "taken"), "--to", "coco"])
    assert info.value.code == 2
    with pytest.raises(SystemExit, match="expected a dataset: .* found nothing at") as info:
        main(["data-check", str(tmp_path / "nowhere")])
    assert info.value.code == 2
