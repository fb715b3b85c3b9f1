"""SIGTERM (a preempted job, a scheduler's time limit, ``kill``) stops training after the current step with
``last.pth`` saved at the exact position; resuming from it ends with the same weights as a run never stopped.
Under torchrun both processes stop after the same step, also when only one got the signal. A second signal
aborts at once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import helpers
import pytest
import torch
from helpers import checkpoint_weights

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recipes import train_voc  # noqa: E402

ITERATIONS = 14


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssd_zoo.data.shapes import generate_shapes_voc

    return generate_shapes_voc(tmp_path_factory.mktemp("shapes"), num_train=6, num_test=2, seed=0, sides=(64, 96))


def tiny_args(root: Path, out: Path) -> list[str]:
    """helpers.tiny_args for ITERATIONS steps, one thread; no periodic checkpoint before the end."""
    return helpers.tiny_args(root, out, "--max-iters", str(ITERATIONS), checkpoint_every="1000", eval_batch_size="2",
                             threads="1")


def logged_steps(out: Path) -> int:
    log = out / "log.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return sum(json.loads(line)["split"] == "train" for line in lines if line.endswith("}"))


def stop_after(process: subprocess.Popen, out: Path, steps: int, send: list[int]) -> tuple[str, str]:
    """Wait until ``out/log.jsonl`` holds ``steps`` training records, send the signal to each pid in ``send``."""
    deadline = time.monotonic() + 240
    while logged_steps(out) < steps:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run logged no steps"
        time.sleep(0.05)
    for pid in send:
        os.kill(pid, signal.SIGTERM)
    return process.communicate(timeout=240)


def test_sigterm_saves_and_resume_gives_the_same_weights(shapes_root: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, str(ROOT / "recipes/train_voc.py"), *tiny_args(shapes_root, cut)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = stop_after(process, cut, 2, [process.pid])
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    state = torch.load(cut / "last.pth", weights_only=True)
    stopped_at = state["iteration"]
    assert 2 <= stopped_at < ITERATIONS, f"stopped at {stopped_at}: the signal came too late to test a stop"
    assert logged_steps(cut) == stopped_at  # the step in progress was finished, no later one begun
    assert f"stopped by SIGTERM after iteration {stopped_at} of {ITERATIONS}" in err
    assert f"Resume with: python recipes/train_voc.py --resume {cut / 'last.pth'}" in err
    assert not (cut / "metrics.json").exists()  # no final evaluation: the job was told to go
    assert not list(cut.glob(".*.tmp"))

    torch.set_num_threads(1)
    resumed = train_voc.train(["--resume", str(cut / "last.pth")])
    whole = train_voc.train(tiny_args(shapes_root, tmp_path / "whole"))
    assert resumed.iteration == whole.iteration == ITERATIONS
    a, b = checkpoint_weights(tmp_path / "whole/last.pth"), checkpoint_weights(cut / "last.pth")
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}")


def test_a_second_signal_aborts_at_once(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from ssd_zoo.train.graceful import GracefulStop
        with GracefulStop() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the first: noted, the process goes on
            print("first noted", stop.signum, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            print("still alive after the second signal", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout == f"first noted {int(signal.SIGTERM)}\n", done.stdout + done.stderr
    assert done.returncode == -signal.SIGTERM
    assert done.stderr.count("SIGTERM received") == 1


RANK_SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
from ssd_zoo.train.graceful import TrainingStopped
from recipes.train_voc import train
open(os.path.join({out!r}, f"pid{{os.environ['RANK']}}"), "w").write(str(os.getpid()))
try:
    train(sys.argv[1:])
except TrainingStopped as stop:
    import torch
    iteration = torch.load(os.path.join({out!r}, "last.pth"), weights_only=True)["iteration"]
    json.dump({{"signal": stop.signum, "iteration": iteration}}, open(os.path.join({out!r}, f"rank{{os.environ['RANK']}}.json"), "w"))
    raise
"""


def test_torchrun_processes_stop_at_the_same_step(shapes_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT.format(root=str(ROOT), out=str(out)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
               *tiny_args(shapes_root, out), "--set", "base_batch_size=4", "--max-iters", "40"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "pid1").is_file() or not (out / "pid1").read_text():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    _, err = stop_after(process, out, 2, [int((out / "pid1").read_text())])  # rank 1 alone is told
    assert process.returncode != 0
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1], ranks  # the same step, from the same all-reduced signal
    assert ranks[0]["signal"] == signal.SIGTERM and 2 <= ranks[0]["iteration"] < 40, ranks
    assert logged_steps(out) == ranks[0]["iteration"]
    assert "Resume with: torchrun --nproc_per_node=2 recipes/train_voc.py --resume" in err
