"""The training loop (as torchvision's ``references/detection/engine.py``): one step, one epoch, the stop on a
signal, the evaluations, and :func:`train`, which runs a resolved config from start (or a checkpoint) to the end.

:func:`train` writes into ``cfg.output_dir``: ``last.pth`` and ``best.pth`` (:mod:`ssd_zoo.train.state`),
``log.jsonl`` and ``tensorboard/`` (:mod:`ssd_zoo.train.records`), and at the end ``metrics.json``,
``results/comp4_det_test_<class>.txt`` and ``pictures/`` (:mod:`ssd_zoo.train.evaluation`).
SIGTERM or SIGINT stops it after the current step with ``last.pth`` saved (:mod:`ssd_zoo.train.graceful`).
"""
from __future__ import annotations

import dataclasses
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ssd_zoo.data import to_device
from ssd_zoo.finetune.coverage_report import coverage_report
from ssd_zoo.finetune.freezing import freeze
from ssd_zoo.train.config import TrainConfig
from ssd_zoo.train.data import make_dataset, set_position, test_loader, train_loader, training_source
from ssd_zoo.train.distributed import Dist, all_reduce_mean, barrier_and_leave, setup_distributed
from ssd_zoo.train.evaluation import evaluate, evaluate_and_report
from ssd_zoo.train.graceful import GracefulStop, TrainingStopped, resume_command
from ssd_zoo.train.model import build_model
from ssd_zoo.train.optim import lr_factor, make_optimizer, make_scheduler
from ssd_zoo.train.records import Recorder
from ssd_zoo.train.state import Run


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained ``model`` (unwrapped, on its device), the final ``metrics``
    (rank 0; None on the other ranks), the resolved ``config`` and the last ``iteration``."""

    model: nn.Module
    metrics: dict[str, Any] | None
    config: TrainConfig
    iteration: int


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; the message names the iteration and the last good checkpoint."""


@dataclass
class Program:
    """How the program that trains is named in messages (``name``) and resumed (``script``, see
    :func:`~ssd_zoo.train.graceful.resume_command`)."""

    name: str = "train_voc.py"
    script: str = "recipes/train_voc.py"


def voc07(metrics: dict[str, Any]) -> float:
    """VOC07 mAP of an evaluation, 0 where no class had ground truth (None in metrics.json)."""
    return metrics["map_voc07"] or 0.0


def eval_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {"map_voc07": voc07(metrics), "map_voc12": metrics["map_voc12"] or 0.0}


def start_run(cfg: TrainConfig, ctx: Dist, class_names: list[str], init_weights: Path | None = None) -> Run:
    """The model (the same initial weights in every process), its optimiser, schedule and loss scaler.

    ``init_weights``: build from this file instead of ``cfg.init_weights`` (a resumed fine-tuning run is
    rebuilt from its own checkpoint, so that the starting weights need not be read, or downloaded, again)."""
    torch.manual_seed(cfg.seed)
    # The class names are the model's (saved in its record); init_weights of other classes go through head surgery.
    model = build_model(cfg, len(class_names) + 1, class_names, init_weights).to(ctx.device)
    if cfg.sync_bn and ctx.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    frozen = freeze(model, cfg.freeze)  # after SyncBatchNorm's conversion, which makes new norm modules
    if frozen and ctx.main:
        print(f"freeze={cfg.freeze}: {len(frozen)} parameter tensors frozen, BatchNorm statistics fixed")
    optimizer = make_optimizer(cfg, model)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and ctx.device.type == "cuda")  # bf16 needs no scaling
    return Run(model, optimizer, make_scheduler(cfg, optimizer), scaler)


def report_coverage(cfg: TrainConfig, model: nn.Module) -> None:
    """Print how well the model's default boxes cover the training boxes (:mod:`ssd_zoo.finetune.coverage_report`,
    with its warning below 90%)."""
    report = coverage_report(model, training_source(cfg), splits=cfg.train_splits, keep_difficult=cfg.keep_difficult,
                             pad_to_square=cfg.pad_to_square, class_names=cfg.class_names)
    print(report.text())


def train_step(run: Run, ddp: nn.Module, images: list[torch.Tensor], targets: list[dict], cfg: TrainConfig,
               ctx: Dist) -> tuple[torch.Tensor, list[str]]:
    """One optimiser step; returns the process-mean ``[total, each loss]`` and the loss names.

    A non-finite loss stops the run (:class:`NonFiniteLoss`) or, with ``skip_nonfinite``, skips the step.
    Every process sees the same mean losses, so all of them take (or skip) the step together.
    """
    amp_dtype = torch.float16 if ctx.device.type == "cuda" else torch.bfloat16
    with torch.autocast(ctx.device.type, dtype=amp_dtype, enabled=cfg.amp):
        losses = ddp(images, targets)
    loss = sum(losses.values())
    logged = all_reduce_mean(torch.stack([loss.detach(), *(v.detach() for v in losses.values())]).float(), ctx)
    run.optimizer.zero_grad(set_to_none=True)
    if torch.isfinite(logged).all():
        run.scaler.scale(loss).backward()
        if cfg.grad_clip:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        where = f"last good checkpoint: {run.last_good}" if run.last_good else "no checkpoint was written yet"
        if not cfg.skip_nonfinite:
            raise NonFiniteLoss(f"non-finite loss {logged.tolist()} (total, {', '.join(losses)}) at iteration "
                                f"{run.iteration}; {where}. Resume from it with a lower lr or grad_clip, or set "
                                "skip_nonfinite: true")
        if ctx.main:
            tqdm.write(f"iteration {run.iteration}: non-finite loss {logged.tolist()}, step skipped ({where})")
    run.scheduler.step()
    run.iteration += 1
    return logged, list(losses)


class Throughput:
    """Images per second since the last :meth:`rate` (or :meth:`reset`)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.tick, self.seen = time.perf_counter(), 0

    def rate(self) -> float:
        rate = self.seen / (time.perf_counter() - self.tick)
        self.reset()
        return rate


@dataclass
class Loop:
    """What one epoch needs beside the run: the wrapped model, the data, the records and the stop."""

    ddp: nn.Module
    loader: DataLoader
    cfg: TrainConfig
    ctx: Dist
    class_names: list[str]
    recorder: Recorder | None
    bar: tqdm
    stop: GracefulStop
    speed: Throughput


def evaluate_and_keep_best(run: Run, loop: Loop) -> None:
    """A periodic evaluation (rank 0): VOC mAP logged and printed; ``best.pth`` when it is the best so far."""
    cfg = loop.cfg
    metrics, _ = evaluate(run.model, test_loader(cfg), loop.class_names, loop.ctx.device, cfg.amp)
    loop.recorder.log(run.iteration, eval_scalars(metrics), "test")
    loop.bar.write(f"iteration {run.iteration}: VOC07 mAP {voc07(metrics):.4f}")
    if voc07(metrics) > run.best_map:
        run.best_map = voc07(metrics)
        run.save(Path(cfg.output_dir) / "best.pth", cfg, loop.class_names)


def after_step(run: Run, loop: Loop, logged: torch.Tensor, names: list[str]) -> None:
    """Rank 0's records after a step: scalars every ``log_every``, ``last.pth`` every ``checkpoint_every`` (and
    at the end), an evaluation every ``eval_every`` (before the end: the final one follows the loop)."""
    cfg, i = loop.cfg, run.iteration
    if i % cfg.log_every == 0 or i == cfg.max_iters:
        rate = loop.speed.rate()
        scalars = {"loss": logged[0].item(), **{k: v.item() for k, v in zip(names, logged[1:])},
                   "lr": cfg.lr * lr_factor(cfg, i), "images_per_s": rate}
        loop.recorder.log(i, scalars)
        loop.bar.set_postfix(loss=f"{scalars['loss']:.3f}", lr=f"{scalars['lr']:.2e}", img_s=f"{rate:.1f}")
    if i % cfg.checkpoint_every == 0 or i == cfg.max_iters:
        run.last_good = run.save(Path(cfg.output_dir) / "last.pth", cfg, loop.class_names)
    if cfg.eval_every and i % cfg.eval_every == 0 and i < cfg.max_iters:
        evaluate_and_keep_best(run, loop)
        loop.speed.reset()


def train_one_epoch(run: Run, loop: Loop) -> int | None:
    """Steps from ``run.iteration`` to the end of its epoch (or ``max_iters``); returns the signal that stopped
    it (every process the same), None otherwise."""
    ctx = loop.ctx
    set_position(loop.loader, run.iteration)
    for images, targets in loop.loader:
        images = [im.to(ctx.device, non_blocking=True) for im in images]
        logged, names = train_step(run, loop.ddp, images, to_device(targets, ctx.device), loop.cfg, ctx)
        loop.speed.seen += len(images) * ctx.world_size
        loop.bar.update(1)
        if ctx.main:
            after_step(run, loop, logged, names)
        stopped = loop.stop.agreed(ctx.world_size, ctx.device)  # SIGTERM/SIGINT in any process: all stop here
        if stopped is not None:
            return stopped
        if run.iteration >= loop.cfg.max_iters:
            break
    return None


def stop_on_signal(run: Run, loop: Loop, signum: int, program: Program) -> TrainingStopped:
    """After the step that saw ``signum`` (every process the same one): ``last.pth`` at the exact position
    (rank 0), every process waiting for it, a line on how to resume; returns the exit to raise."""
    cfg, ctx = loop.cfg, loop.ctx
    path = Path(cfg.output_dir) / "last.pth"
    if ctx.main:
        run.last_good = run.save(path, cfg, loop.class_names)
    barrier_and_leave(ctx)  # no process exits (and so makes torchrun end the others) before the save
    message = (f"{program.name}: stopped by {signal.Signals(signum).name} after iteration {run.iteration} of "
               f"{cfg.max_iters}; saved {path}. Resume with: {resume_command(path, ctx.world_size, program.script)}")
    if ctx.main:
        print(message, file=sys.stderr, flush=True)
    return TrainingStopped(signum, message)


def final_evaluation(run: Run, loop: Loop) -> dict[str, Any]:
    """Rank 0 at the end: metrics.json, results files, pictures; ``best.pth`` when it is the best so far."""
    cfg = loop.cfg
    metrics = evaluate_and_report(run.model, test_loader(cfg), loop.ctx.device, cfg.amp, cfg.output_dir, cfg.draw,
                                  cfg.draw_score, {"iteration": run.iteration, "model": cfg.model, "backbone": cfg.backbone})
    loop.recorder.log(run.iteration, eval_scalars(metrics), "test")
    if voc07(metrics) > run.best_map:
        run.best_map = voc07(metrics)
        run.save(Path(cfg.output_dir) / "best.pth", cfg, loop.class_names)
    return metrics


def train(cfg: TrainConfig, checkpoint: dict[str, Any] | None = None, resume_path: Path | None = None,
          program: Program | None = None) -> TrainResult:
    """Train ``cfg`` (resolved: batch scaling done) to ``cfg.max_iters`` and evaluate; see the module docstring.

    ``checkpoint`` (read from ``resume_path`` by :func:`~ssd_zoo.train.state.load_checkpoint`): continue exactly
    from it. Under torchrun every process calls this; rank 0 writes. A stop on SIGTERM/SIGINT raises
    :class:`~ssd_zoo.train.graceful.TrainingStopped` (exit code ``128 + signal``) after saving ``last.pth``."""
    program = program or Program()
    with GracefulStop() as stop:
        ctx = setup_distributed(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if ctx.main:
            Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
            print(f"config: {dataclasses.asdict(cfg)}")

        # --- data, model, optimiser; the loader fills zoom-out canvases with the model's normalisation mean ---
        dataset = make_dataset(cfg, train=True)
        class_names = list(dataset.class_names)
        if cfg.init_weights and cfg.backbone_init and ctx.main:
            print(f"init_weights={cfg.init_weights!r} brings the backbone: backbone_init={cfg.backbone_init!r} is not used")
        run = start_run(cfg, ctx, class_names, resume_path if checkpoint is not None and cfg.init_weights else None)
        if ctx.main:
            report_coverage(cfg, run.model)
        loader = train_loader(cfg, dataset, run.model.transform.mean.flatten().tolist(), ctx.rank, ctx.world_size)
        if checkpoint is not None:
            run.restore(checkpoint, resume_path)
        ddp = run.model
        if ctx.world_size > 1:
            ddp = nn.parallel.DistributedDataParallel(run.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

        # --- the loop: epochs of steps, records, checkpoints, evaluations ---
        bar = tqdm(total=cfg.max_iters, initial=run.iteration, disable=not ctx.main, dynamic_ncols=True, desc="train")
        loop = Loop(ddp, loader, cfg, ctx, class_names, Recorder(cfg.output_dir, cfg.tensorboard) if ctx.main else None,
                    bar, stop, Throughput())
        run.model.train()
        stopped = None
        while run.iteration < cfg.max_iters and stopped is None:
            stopped = train_one_epoch(run, loop)
        bar.close()
        if stopped is not None:
            if loop.recorder is not None:
                loop.recorder.close()
            raise stop_on_signal(run, loop, stopped, program)

        # --- the final evaluation (rank 0): metrics.json, results files, pictures, best.pth ---
        metrics = final_evaluation(run, loop) if ctx.main else None
        if loop.recorder is not None:
            loop.recorder.close()
        barrier_and_leave(ctx)
        return TrainResult(run.model, metrics, cfg, run.iteration)
