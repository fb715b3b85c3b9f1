"""``ssd-zoo train DATA --from WEIGHTS``: VOC, COCO and YOLO data, head surgery by name, the files it writes,
exact resume, the small model from scratch, and its config (ssd_zoo.train.from_data). A few tiny images, a
tiny model and a handful of steps: what is tested is the wiring, not the accuracy."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import ssd_zoo
from ssd_zoo.cli import main
from ssd_zoo.data import convert, open_dataset
from ssd_zoo.data.shapes import generate_shapes_voc
from ssd_zoo.train.from_data import AUGMENT, SMALL_MODEL, config_for_data, data_splits, schedule_keys

ROOT = Path(__file__).resolve().parents[1]
TINY = {"backbone": "resnet18", "input_size": 64, "anchors": "coco", "extra_channels": [16, 16, 16],
        "timm_kwargs": {"channels": [8, 8, 16, 16], "stem_width": 8}}

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 4 training and 2 test images as a VOC folder, a COCO folder and a YOLO data.yaml."""
    root = tmp_path_factory.mktemp("train_data")
    voc = generate_shapes_voc(root / "voc", 4, 2, seed=3, sides=(64, 80))
    return {"voc": voc, "coco": convert(voc, root / "coco", "coco"), "yolo": convert(voc, root / "yolo", "yolo") / "data.yaml"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SSD that knows circle and star: fine-tuning keeps circle's row and starts the others afresh."""
    path = tmp_path_factory.mktemp("train_weights") / "tiny.pth"
    torch.manual_seed(0)
    torch.save(ssd_zoo.build("ssd", class_names=["star", "circle"], **TINY).state_dict(), path)
    return path


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "2", "--device", "cpu",
            "--set", "eval_batch_size=2", "--set", "draw=2", *extra]


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_trains_from_weights_and_writes_best_last_metrics_pictures(
    fmt: str, datasets: dict[str, Path], weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.warns(UserWarning, match="head surgery"):
        assert main(train_args(datasets[fmt], tmp_path, "--from", str(weights))) == 0
    printed = capsys.readouterr().out
    assert "no problems found" in printed and "default boxes:" in printed and "VOC07 mAP" in printed
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= (metrics["map_voc07"] or 0.0) <= 1.0 and metrics["num_images"] == 2 and metrics["iteration"] == 2
    assert len(list((tmp_path / "pictures").glob("*.png"))) == 2
    names = list(open_dataset(datasets[fmt], "train").class_names)
    for file in ("best.pth", "last.pth"):
        state = torch.load(tmp_path / file, weights_only=True)
        assert state["class_names"] == names and state["config"]["init_weights"] == str(weights)
    model = ssd_zoo.load(tmp_path / "best.pth")  # a training checkpoint loads as any ssd_zoo file
    assert model.class_names[1:] == names and model.input_size == 64


def test_the_three_formats_give_the_same_config_but_for_the_data(datasets: dict[str, Path], weights: Path) -> None:
    configs = [config_for_data(datasets[fmt], weights=str(weights), device="cpu") for fmt in ("voc", "coco", "yolo")]
    # The YOLO export names the test images val too (ultralytics wants a val split): the same 2 images.
    assert [len(open_dataset(c.data, c.test_split)) for c in configs] == [2, 2, 2]
    keys = {k: v for k, v in vars(configs[0]).items() if k not in ("data", "test_split")}
    assert all({k: v for k, v in vars(c).items() if k not in ("data", "test_split")} == keys for c in configs[1:])
    assert keys["model"] == "ssd" and keys["input_size"] == 64 and keys["batch_size"] == 4  # at most the images
    assert keys["model_kwargs"] == {k: v for k, v in TINY.items() if k not in ("backbone", "input_size")}


def test_resume_continues_exactly(datasets: dict[str, Path], weights: Path, tmp_path: Path) -> None:
    steps = ["--set", "schedule=multistep", "--set", "checkpoint_every=1", "--no-check"]
    main(train_args(datasets["yolo"], tmp_path / "whole", "--from", str(weights), *steps, "--set", "max_iters=3"))
    main(train_args(datasets["yolo"], tmp_path / "cut", "--from", str(weights), *steps, "--set", "max_iters=1"))
    state = torch.load(tmp_path / "cut/last.pth", weights_only=True)
    state["config"]["max_iters"] = 3  # as if the run had been stopped after its first step
    torch.save(state, tmp_path / "cut/last.pth")
    main(["train", str(datasets["yolo"]), "--out", str(tmp_path / "cut"), "--resume"])
    a, b = (torch.load(tmp_path / run / "last.pth", weights_only=True) for run in ("whole", "cut"))
    assert a["iteration"] == b["iteration"] == 3
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)


def test_without_from_the_small_model_trains_from_scratch(datasets: dict[str, Path], tmp_path: Path) -> None:
    assert main(train_args(datasets["coco"], tmp_path, "--no-check", "--set", "draw=0")) == 0
    state = torch.load(tmp_path / "best.pth", weights_only=True)
    assert state["config"]["init_weights"] is None and state["config"]["input_size"] == 128
    assert state["config"]["pad_to_square"] is True


def test_the_small_model_is_the_demos() -> None:
    demo = yaml.safe_load((ROOT / "recipes/configs/shapes_quick.yaml").read_text())
    assert {key: demo[key] for key in SMALL_MODEL} == SMALL_MODEL and demo["augment"] == AUGMENT


def test_input_size_where_the_model_takes_it(datasets: dict[str, Path], weights: Path) -> None:
    cfg = config_for_data(datasets["voc"], input_size=96, device="cpu")
    assert cfg.input_size == 96 and "box_sizes" not in cfg.model_kwargs  # the demo's sizes hold at 128 only
    with pytest.raises(ValueError, match="model 'ssd300_vgg16' has a fixed input"):
        config_for_data(datasets["voc"], model="ssd300_vgg16", input_size=512, device="cpu")


def test_schedule_fits_the_data() -> None:
    small, large = schedule_keys(40, 16, None, finetune=True), schedule_keys(16000, 16, None, finetune=True)
    assert small["max_iters"] == 600 and small["checkpoint_every"] == 2  # 300 epochs of 2 steps
    assert large["max_iters"] == 1000 and small["warmup_iters"] == 50  # one epoch at least
    assert schedule_keys(40, 16, 3, finetune=False)["max_iters"] == 6


def test_mistakes_are_one_line(datasets: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="ssd-zoo train: --from 'nothing.pth': expected a checkpoint file") as info:
        main(["train", str(datasets["voc"]), "--from", "nothing.pth", "--device", "cpu"])
    assert info.value.code == 2
    only_train = convert(datasets["voc"], tmp_path / "one", "yolo")
    (only_train / "data.yaml").write_text(yaml.safe_dump({**yaml.safe_load((only_train / "data.yaml").read_text()),
                                                          "val": None, "test": None}))
    with pytest.raises(ValueError, match="expected a 'val' \\(or 'test'\\) split to evaluate on, found only"):
        data_splits(only_train)


def test_fit_anchors_trains_with_the_fitted_boxes(datasets: dict[str, Path], weights: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    main(train_args(datasets["coco"], tmp_path, "--from", str(weights), "--fit-anchors", "--no-check",
                    "--set", "max_iters=1", "--set", "draw=0"))
    printed = capsys.readouterr().out
    assert "fitted default boxes:" in printed and "note:" not in printed
    fitted = yaml.safe_load(printed[printed.index("model_kwargs:"):].split("\n\n")[0].split("\nconfig:")[0])
    config = torch.load(tmp_path / "last.pth", weights_only=True)["config"]
    assert config["model_kwargs"]["box_sizes"] == fitted["model_kwargs"]["box_sizes"]
    assert tuple(fitted["model_kwargs"]["box_sizes"]) != ssd_zoo.build("ssd", **TINY).default_boxes.spec.sizes
    assert config["init_weights"] == str(tmp_path / "start.pth")  # the weights, carried into the fitted boxes
    start, source = ssd_zoo.load(tmp_path / "start.pth"), ssd_zoo.load(weights)
    torch.testing.assert_close(start.backbone.state_dict(), source.backbone.state_dict(), rtol=0, atol=0)
