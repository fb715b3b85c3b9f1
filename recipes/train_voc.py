"""Train an SSD on Pascal VOC (or any VOC- or COCO-format data), then evaluate it.

    python recipes/train_voc.py --config recipes/configs/ssd300_vgg16_voc0712.yaml --data-root data/VOCdevkit
    torchrun --nproc_per_node=4 recipes/train_voc.py --config ... --batch-size 8   # 8 per process
    python recipes/train_voc.py --resume runs/ssd300_vgg16_voc0712/last.pth        # continue exactly

Reads top to bottom: configuration, processes, data, model, optimiser, resume, the loop (loss, non-finite
check, step, records, checkpoints, evaluation), the final evaluation. Writes into the output directory:
``last.pth`` and ``best.pth`` (model, optimizer, scheduler, scaler, iteration, RNG states, resolved config),
``log.jsonl``, ``tensorboard/``, ``metrics.json``, ``results/comp4_det_test_<class>.txt`` and ``pictures/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `recipes` importable

from recipes.common import (  # noqa: E402
    Dist, Recorder, all_reduce_mean, build_model, load_checkpoint, rng_state, save_atomic, set_rng_state,
    setup_distributed,
)
from recipes.config import TrainConfig, load_config, parse_override, scale_to_batch  # noqa: E402
from recipes.data import make_dataset, set_position, test_loader, train_loader  # noqa: E402
from recipes.evaluation import evaluate, evaluate_and_report  # noqa: E402
from recipes.graceful import GracefulStop, TrainingStopped, resume_command  # noqa: E402
from ssd_zoo.finetune import coverage, load_boxes  # noqa: E402
from ssd_zoo.data import to_device  # noqa: E402
from ssd_zoo.errors import add_debug_flag, run_main  # noqa: E402
from ssd_zoo.finetune.freezing import freeze  # noqa: E402


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, help="YAML file in recipes/configs/ (optional with --resume)")
    p.add_argument("--data-root", help="VOCdevkit folder (overrides data_root)")
    p.add_argument("--output-dir", help="where checkpoints, logs and metrics go (overrides output_dir)")
    p.add_argument("--batch-size", type=int, help="images per process and step; lr and iterations scale with it")
    p.add_argument("--max-iters", type=int, help="total iterations, taken as given (not scaled)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: the config's (cuda)")
    p.add_argument("--amp", action="store_true", help="fp16 + GradScaler on CUDA, bf16 autocast on the CPU")
    p.add_argument("--resume", type=Path, help="a last.pth/best.pth to continue from")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (YAML value)")
    add_debug_flag(p)
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace, checkpoint: dict[str, Any] | None, world_size: int) -> TrainConfig:
    """Defaults < YAML (or the resumed run's config) < ``--set`` < the named flags; then batch scaling."""
    overrides = dict(parse_override(item) for item in args.set)
    named = {"data_root": args.data_root, "output_dir": args.output_dir, "batch_size": args.batch_size,
             "device": args.device, "amp": args.amp or None}
    overrides.update({k: v for k, v in named.items() if v is not None})
    if checkpoint is not None and args.config is None:
        cfg = dataclasses.replace(TrainConfig(**checkpoint["config"]), **overrides)  # already scaled
    elif args.config is None:
        raise SystemExit("train_voc.py: expected --config FILE (or --resume CKPT), found neither")
    else:
        cfg = load_config(args.config, overrides)
        cfg = scale_to_batch(dataclasses.replace(cfg, batch_size=cfg.batch_size * world_size))
        cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size // world_size)  # back to per process
    return dataclasses.replace(cfg, max_iters=args.max_iters) if args.max_iters is not None else cfg  # 0: an error


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW; no weight decay on biases and norm scales; the heads' groups
    at ``lr * head_lr_mult`` (``lr_mult`` in each group); frozen parameters (no gradient) left out."""
    heads = {id(p) for p in model.head.parameters()}
    groups = []
    for mult, params in ((1.0, [p for p in model.parameters() if id(p) not in heads]),
                         (cfg.head_lr_mult, list(model.head.parameters()))):
        trained = [p for p in params if p.requires_grad]
        groups += [{"params": [p for p in trained if p.dim() > 1], "weight_decay": cfg.weight_decay, "lr_mult": mult},
                   {"params": [p for p in trained if p.dim() <= 1], "weight_decay": 0.0, "lr_mult": mult}]
    groups = [{**g, "lr": cfg.lr * g["lr_mult"]} for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"optimizer: expected 'sgd' or 'adamw', found {cfg.optimizer!r}")


def lr_factor(cfg: TrainConfig, iteration: int) -> float:
    """The learning rate at ``iteration`` as a multiple of ``cfg.lr``: linear warm-up, then the schedule."""
    warmup = 1.0
    if iteration < cfg.warmup_iters:
        warmup = cfg.warmup_factor + (1 - cfg.warmup_factor) * iteration / cfg.warmup_iters
    if cfg.schedule == "multistep":
        return warmup * cfg.lr_gamma ** sum(iteration >= step for step in cfg.lr_steps)
    if cfg.schedule == "cosine":
        return warmup * 0.5 * (1 + math.cos(math.pi * min(iteration, cfg.max_iters) / cfg.max_iters))
    raise ValueError(f"schedule: expected 'multistep' or 'cosine', found {cfg.schedule!r}")


@dataclass
class Run:
    """Everything the loop changes and a checkpoint keeps: the model and its optimiser state, the position."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    iteration: int = 0
    best_map: float = -1.0
    last_good: Path | None = None  # the newest checkpoint written (or resumed from)

    def save(self, path: Path, cfg: TrainConfig, class_names: list[str]) -> Path:
        """Write ``last.pth``/``best.pth`` atomically: weights, optimiser, schedule, scaler, position, RNG, config."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "iteration": self.iteration, "best_map": self.best_map, "rng": rng_state(),
                 "config": dataclasses.asdict(cfg), "class_names": list(class_names)}
        save_atomic(state, path)
        return path

    def restore(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Continue exactly from ``checkpoint`` (as :meth:`save` wrote it)."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.iteration, self.best_map, self.last_good = checkpoint["iteration"], checkpoint["best_map"], path
        set_rng_state(checkpoint["rng"])


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
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(cfg, i))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and ctx.device.type == "cuda")  # bf16 needs no scaling
    return Run(model, optimizer, scheduler, scaler)


def report_coverage(cfg: TrainConfig, model: nn.Module) -> None:
    """Print how well the model's default boxes cover the training boxes (:mod:`ssd_zoo.finetune`); warn below 90%."""
    truth = load_boxes(cfg.coco_train[1] if cfg.coco_train else cfg.data_root, model.input_size, splits=cfg.train_splits,
                       keep_difficult=cfg.keep_difficult, pad_to_square=cfg.pad_to_square, class_names=cfg.class_names)
    report = coverage(model, truth)
    print(report.table())
    if report.warning(0.9):
        print(report.warning(0.9))


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


def stop_on_signal(run: Run, cfg: TrainConfig, ctx: Dist, class_names: list[str], signum: int) -> TrainingStopped:
    """After the step that saw ``signum`` (every process the same one): ``last.pth`` at the exact position
    (rank 0), every process waiting for it, a line on how to resume; returns the exit to raise."""
    path = Path(cfg.output_dir) / "last.pth"
    if ctx.main:
        run.last_good = run.save(path, cfg, class_names)
    if ctx.world_size > 1:
        torch.distributed.barrier()  # no process exits (and so makes torchrun end the others) before the save
        torch.distributed.destroy_process_group()
    name = signal.Signals(signum).name
    message = (f"train_voc.py: stopped by {name} after iteration {run.iteration} of {cfg.max_iters}; saved {path}. "
               f"Resume with: {resume_command(path, ctx.world_size)}")
    if ctx.main:
        print(message, file=sys.stderr, flush=True)
    return TrainingStopped(signum, message)


def train(argv: list[str] | None = None) -> TrainResult:
    """Run the recipe with command-line ``argv`` (``sys.argv[1:]`` when None); see the module docstring.

    SIGTERM or SIGINT stops it after the current step with ``last.pth`` saved (:mod:`recipes.graceful`): it
    raises :class:`TrainingStopped`, a SystemExit with code ``128 + signal``."""
    with GracefulStop() as stop:
        return _train(argv, stop)


def _train(argv: list[str] | None, stop: GracefulStop) -> TrainResult:
    args = parse_args(argv)
    checkpoint = load_checkpoint(args.resume) if args.resume else None

    # --- configuration and processes: torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; alone it is one process ---
    cfg = resolve_config(args, checkpoint, int(os.environ.get("WORLD_SIZE", "1")))
    ctx = setup_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    output_dir = Path(cfg.output_dir)
    if ctx.main:
        output_dir.mkdir(parents=True, exist_ok=True)
        print(f"config: {dataclasses.asdict(cfg)}")

    # --- data, model, optimiser; the loader fills zoom-out canvases with the model's normalisation mean ---
    dataset = make_dataset(cfg, train=True)
    class_names = list(dataset.class_names)
    if cfg.init_weights and cfg.backbone_init and ctx.main:
        print(f"init_weights={cfg.init_weights!r} brings the backbone: backbone_init={cfg.backbone_init!r} is not used")
    run = start_run(cfg, ctx, class_names, args.resume if checkpoint is not None and cfg.init_weights else None)
    if ctx.main:
        report_coverage(cfg, run.model)
    loader = train_loader(cfg, dataset, run.model.transform.mean.flatten().tolist(), ctx.rank, ctx.world_size)
    if checkpoint is not None:
        run.restore(checkpoint, args.resume)
    ddp = run.model
    if ctx.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(run.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    # --- the loop: step, records, checkpoints, evaluations ---
    recorder = Recorder(output_dir, cfg.tensorboard) if ctx.main else None
    bar = tqdm(total=cfg.max_iters, initial=run.iteration, disable=not ctx.main, dynamic_ncols=True, desc="train")
    run.model.train()
    tick, seen, stopped = time.perf_counter(), 0, None
    while run.iteration < cfg.max_iters and stopped is None:
        set_position(loader, run.iteration)
        for images, targets in loader:
            images = [im.to(ctx.device, non_blocking=True) for im in images]
            logged, names = train_step(run, ddp, images, to_device(targets, ctx.device), cfg, ctx)
            seen += len(images) * ctx.world_size
            bar.update(1)
            if ctx.main and (run.iteration % cfg.log_every == 0 or run.iteration == cfg.max_iters):
                rate = seen / (time.perf_counter() - tick)
                tick, seen = time.perf_counter(), 0
                scalars = {"loss": logged[0].item(), **{k: v.item() for k, v in zip(names, logged[1:])},
                           "lr": cfg.lr * lr_factor(cfg, run.iteration), "images_per_s": rate}
                recorder.log(run.iteration, scalars)
                bar.set_postfix(loss=f"{scalars['loss']:.3f}", lr=f"{scalars['lr']:.2e}", img_s=f"{rate:.1f}")
            if ctx.main and (run.iteration % cfg.checkpoint_every == 0 or run.iteration == cfg.max_iters):
                run.last_good = run.save(output_dir / "last.pth", cfg, class_names)
            if ctx.main and cfg.eval_every and run.iteration % cfg.eval_every == 0 and run.iteration < cfg.max_iters:
                metrics, _ = evaluate(run.model, test_loader(cfg), class_names, ctx.device, cfg.amp)
                recorder.log(run.iteration, eval_scalars(metrics), "test")
                bar.write(f"iteration {run.iteration}: VOC07 mAP {voc07(metrics):.4f}")
                if voc07(metrics) > run.best_map:
                    run.best_map = voc07(metrics)
                    run.save(output_dir / "best.pth", cfg, class_names)
                tick, seen = time.perf_counter(), 0
            stopped = stop.agreed(ctx.world_size, ctx.device)  # SIGTERM/SIGINT in any process: all stop here
            if run.iteration >= cfg.max_iters or stopped is not None:
                break
    bar.close()
    if stopped is not None:
        if recorder is not None:
            recorder.close()
        raise stop_on_signal(run, cfg, ctx, class_names, stopped)

    # --- the final evaluation (rank 0): metrics.json, results files, pictures, best.pth ---
    metrics = None
    if ctx.main:
        metrics = evaluate_and_report(run.model, test_loader(cfg), ctx.device, cfg.amp, cfg.output_dir, cfg.draw,
                                      cfg.draw_score, {"iteration": run.iteration, "model": cfg.model, "backbone": cfg.backbone})
        recorder.log(run.iteration, eval_scalars(metrics), "test")
        recorder.close()
        if voc07(metrics) > run.best_map:
            run.best_map = voc07(metrics)
            run.save(output_dir / "best.pth", cfg, class_names)
    if ctx.world_size > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return TrainResult(run.model, metrics, cfg, run.iteration)


if __name__ == "__main__":
    # Bad input (a missing or corrupt file, a bad config, a value out of range) or a non-finite loss: one line,
    # exit code 2 (ssd_zoo.errors); a stop on SIGTERM/SIGINT exits with 128 + the signal's number.
    run_main(train, "train_voc.py", expected=(NonFiniteLoss,))
