"""The training and evaluation recipes on a tiny shapes split with a tiny model (64 px, a few iterations):
resume equivalence, atomic checkpoints, non-finite losses, torchrun with two gloo processes, eval_voc.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import checkpoint_weights, tiny_args

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recipes import eval_voc, train_voc  # noqa: E402
from ssd_zoo.files import save_atomic  # noqa: E402
from ssd_zoo.train.config import load_config, scale_to_batch  # noqa: E402
from ssd_zoo.train.engine import NonFiniteLoss  # noqa: E402
from ssd_zoo.train.model import build_model  # noqa: E402
from ssd_zoo.train.optim import lr_factor  # noqa: E402
from ssd_zoo.train.state import load_checkpoint  # noqa: E402
from ssd_zoo.files import read_file  # noqa: E402

CLASSES = ("circle", "ellipse", "square", "rectangle", "triangle", "cross")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssd_zoo.data.shapes import generate_shapes_voc

    return generate_shapes_voc(tmp_path_factory.mktemp("shapes"), num_train=6, num_test=3, seed=0)


def test_resume_gives_the_same_weights(shapes_root: Path, tmp_path: Path) -> None:
    # 3 steps per epoch (6 images, batch 2): 2 + 2 resumes mid-epoch and crosses into the next one.
    whole = train_voc.train(tiny_args(shapes_root, tmp_path / "whole", "--max-iters", "4"))
    train_voc.train(tiny_args(shapes_root, tmp_path / "cut", "--max-iters", "2"))
    resumed = train_voc.train(["--resume", str(tmp_path / "cut/last.pth"), "--max-iters", "4"])
    assert whole.iteration == resumed.iteration == 4
    a, b = checkpoint_weights(tmp_path / "whole/last.pth"), checkpoint_weights(tmp_path / "cut/last.pth")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}")
    state = torch.load(tmp_path / "cut/last.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "iteration", "rng", "config"} <= state.keys()
    assert state["iteration"] == 4 and state["config"]["input_size"] == 64


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pth"
    save_atomic({"iteration": 1, "w": torch.ones(3)}, path)

    def crash_midway(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")  # what a killed process leaves behind
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"iteration": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = read_file(path)
    assert state["iteration"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert list(tmp_path.iterdir()) == [path]  # the half-written temporary file is gone
    save_atomic({"iteration": 3}, path)
    assert read_file(path)["iteration"] == 3


def nan_from_call(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the SSD loss NaN from its ``n``-th call on (1-based)."""
    import ssd_zoo.models.ssd as ssd_module

    real, calls = ssd_module.ssd_loss, []

    def loss(*args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        out = real(*args, **kwargs)
        calls.append(1)
        return {**out, "classification": out["classification"] * float("nan")} if len(calls) >= n else out

    monkeypatch.setattr(ssd_module, "ssd_loss", loss)


def test_nonfinite_loss_stops_naming_iteration_and_checkpoint(
    shapes_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nan_from_call(3, monkeypatch)
    with pytest.raises(NonFiniteLoss, match=r"at iteration 2; last good checkpoint: .*last\.pth"):
        train_voc.train(tiny_args(shapes_root, tmp_path, "--max-iters", "4"))
    assert load_checkpoint(tmp_path / "last.pth")["iteration"] == 2


def test_nonfinite_loss_skipped_when_asked(shapes_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nan_from_call(3, monkeypatch)
    result = train_voc.train(tiny_args(shapes_root, tmp_path, "--max-iters", "3", "--set", "skip_nonfinite=true"))
    assert result.iteration == 3
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_eval_voc_writes_metrics_and_results(shapes_root: Path, tmp_path: Path) -> None:
    train_voc.train(tiny_args(shapes_root, tmp_path / "train", "--max-iters", "1"))
    out = tmp_path / "eval"
    eval_voc.main(["--config", str(ROOT / "recipes/configs/shapes_quick.yaml"), "--weights", str(tmp_path / "train/last.pth"),
                   "--data-root", str(shapes_root), "--output-dir", str(out), "--device", "cpu", "--draw", "1"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"map_voc07", "map_voc12", "ap"} <= metrics.keys()
    assert 0.0 <= metrics["map_voc07"] <= 1.0 and 0.0 <= metrics["map_voc12"] <= 1.0
    assert tuple(metrics["ap"]) == CLASSES
    assert all(ap is None or 0.0 <= ap <= 1.0 for ap in metrics["ap"].values())
    for name in CLASSES:
        for line in (out / f"results/comp4_det_test_{name}.txt").read_text().splitlines():
            image_id, score, *box = line.split()
            assert image_id.startswith("test_") and 0 <= float(score) <= 1 and len(box) == 4
    assert len(list((out / "pictures").glob("*.png"))) == 1


RANK_SCRIPT = """
import os, sys, torch
sys.path.insert(0, {root!r})
from recipes.train_voc import train
result = train(sys.argv[1:])
torch.save({{k: v.detach() for k, v in result.model.named_parameters()}}, os.path.join({ranks!r}, f"rank{{os.environ['RANK']}}.pt"))
"""


def test_torchrun_two_processes(shapes_root: Path, tmp_path: Path) -> None:
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    script = tmp_path / "run_rank.py"
    script.write_text(textwrap.dedent(RANK_SCRIPT.format(root=str(ROOT), ranks=str(ranks))))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
               *tiny_args(shapes_root, out, "--max-iters", "2", "--set", "base_batch_size=4")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    a, b = torch.load(ranks / "rank0.pt", weights_only=True), torch.load(ranks / "rank1.pt", weights_only=True)
    for key in a:  # parameters; BatchNorm running statistics are per process (rank 0's are saved)
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=lambda m, key=key: f"{key} differs between ranks: {m}")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["split"] == "train"] == [1, 2]  # rank 0 alone logged
    assert sorted(p.name for p in out.iterdir()) == ["best.pth", "last.pth", "log.jsonl", "metrics.json", "results"]
    assert torch.load(out / "last.pth", weights_only=True)["config"]["batch_size"] == 2  # per process


@pytest.mark.parametrize("config", sorted((ROOT / "recipes/configs").glob("*.yaml")), ids=lambda p: p.name)
def test_configs_load_and_name_registered_models(config: Path) -> None:
    import ssd_zoo

    cfg = load_config(config)
    assert cfg.model == "ssd" or cfg.model in ssd_zoo.list_models(), f"{config.name}: unknown model {cfg.model!r}"


def test_schedule_scales_with_the_batch() -> None:
    cfg = scale_to_batch(load_config(ROOT / "recipes/configs/ssd300_vgg16_voc0712.yaml", {"batch_size": 64}))
    assert (cfg.lr, cfg.max_iters, cfg.lr_steps) == (2e-3, 60000, [40000, 50000])
    assert lr_factor(cfg, 0) == pytest.approx(cfg.warmup_factor)
    assert lr_factor(cfg, 45000) == pytest.approx(0.1)


def test_unknown_config_key_is_named() -> None:
    with pytest.raises(ValueError, match="unknown keys \\['learning_rate'\\]"):
        load_config(None, {"learning_rate": 0.1})


def test_missing_vgg16_file_says_where_to_put_it(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "recipes/configs/ssd300_vgg16_voc0712.yaml", {"backbone_init": str(tmp_path / "vgg16_reducedfc.pth")})
    with pytest.raises(FileNotFoundError, match="vgg16_reducedfc.pth.*put it at that path"):
        build_model(cfg, 21)


def test_every_named_variant_has_a_voc_config() -> None:
    import ssd_zoo

    from ssd_zoo.registry import get_builder

    generic = {"ssd", "ssd300", "ssd512", "ssdlite320"}  # need a backbone name: they have no config of their own
    # Other projects' published architectures (ssd_zoo.weights.publishers) are there to load their weights, not to train.
    published = {n for n in ssd_zoo.list_models() if get_builder(n).__module__.startswith("ssd_zoo.weights.publishers")}
    configs = {p.name.removesuffix("_voc0712.yaml") for p in (ROOT / "recipes/configs").glob("*_voc0712.yaml")}
    missing = sorted(set(ssd_zoo.list_models()) - generic - published - configs)
    assert not missing, f"no recipes/configs/<name>_voc0712.yaml for registered models {missing}"


def test_amp_on_cpu_trains_in_bfloat16(shapes_root: Path, tmp_path: Path) -> None:
    result = train_voc.train(tiny_args(shapes_root, tmp_path, "--max-iters", "2", "--amp"))
    assert result.config.amp and result.iteration == 2
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_pad_to_square_keeps_boxes_and_pixels() -> None:
    from ssd_zoo.data import PadToSquare

    image = torch.rand(3, 20, 30)
    target = {"boxes": torch.tensor([[1.0, 2.0, 29.0, 19.0]]), "labels": torch.tensor([1])}
    padded, same = PadToSquare((0.5, 0.5, 0.5))(image, target)
    assert padded.shape == (3, 30, 30) and torch.equal(padded[:, :20], image)
    assert torch.all(padded[:, 20:] == 0.5) and same is target


def test_default_box_spec_takes_the_datas_box_sizes() -> None:
    from ssd_zoo.ops.default_boxes import default_box_spec

    spec = default_box_spec(128, "coco", box_sizes=(18, 34, 52, 84, 109, 134), aspect_ratios=((2, 3),) * 4 + ((2,),))
    assert spec.sizes == (18.0, 34.0, 52.0, 84.0, 109.0, 134.0) and spec.steps == (8.0, 16.0, 32.0, 64.0, 128.0)
    assert spec.boxes_per_location == [6, 6, 6, 6, 4]
    assert default_box_spec(128, "coco").sizes[0] == pytest.approx(21 * 128 / 300)  # the COCO preset, scaled
    with pytest.raises(ValueError, match=r"maps \[16, 8, 4, 2, 1\] are 5 levels, so expected 6 box_sizes and 5 aspect_ratios"):
        default_box_spec(128, "coco", box_sizes=(18, 34, 52))
