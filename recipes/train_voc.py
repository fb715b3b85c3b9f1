"""Train an SSD on Pascal VOC (or any VOC- or COCO-format data), then evaluate it.

    python recipes/train_voc.py --config recipes/configs/ssd300_vgg16_voc0712.yaml --data-root data/VOCdevkit
    torchrun --nproc_per_node=4 recipes/train_voc.py --config ... --batch-size 8   # 8 per process
    python recipes/train_voc.py --resume runs/ssd300_vgg16_voc0712/last.pth        # continue exactly

Parses the command line, resolves the config (defaults < YAML < ``--set`` < named flags, then the batch
scaling) and calls :func:`ssd_zoo.train.engine.train`, which writes into the output directory: ``last.pth``
and ``best.pth`` (model, optimizer, scheduler, scaler, iteration, RNG states, resolved config), ``log.jsonl``,
``tensorboard/``, ``metrics.json``, ``results/comp4_det_test_<class>.txt`` and ``pictures/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's ssd_zoo first

from ssd_zoo.errors import add_debug_flag, run_main  # noqa: E402
from ssd_zoo.train.config import TrainConfig, load_config, parse_override, scale_to_batch  # noqa: E402
from ssd_zoo.train.distributed import world_size  # noqa: E402
from ssd_zoo.train.engine import NonFiniteLoss, TrainResult, train as run_training  # noqa: E402
from ssd_zoo.train.state import load_checkpoint  # noqa: E402


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


def resolve_config(args: argparse.Namespace, checkpoint: dict[str, Any] | None, processes: int) -> TrainConfig:
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
        cfg = scale_to_batch(dataclasses.replace(cfg, batch_size=cfg.batch_size * processes))
        cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size // processes)  # back to per process
    return dataclasses.replace(cfg, max_iters=args.max_iters) if args.max_iters is not None else cfg  # 0: an error


def train(argv: list[str] | None = None) -> TrainResult:
    """Run the recipe with command-line ``argv`` (``sys.argv[1:]`` when None); see the module docstring.

    SIGTERM or SIGINT stops it after the current step with ``last.pth`` saved (:mod:`ssd_zoo.train.graceful`):
    it raises :class:`~ssd_zoo.train.graceful.TrainingStopped`, a SystemExit with code ``128 + signal``."""
    args = parse_args(argv)
    checkpoint = load_checkpoint(args.resume) if args.resume else None
    cfg = resolve_config(args, checkpoint, world_size())  # torchrun sets WORLD_SIZE; alone it is one process
    return run_training(cfg, checkpoint, args.resume)


if __name__ == "__main__":
    # Bad input (a missing or corrupt file, a bad config, a value out of range) or a non-finite loss: one line,
    # exit code 2 (ssd_zoo.errors); a stop on SIGTERM/SIGINT exits with 128 + the signal's number.
    run_main(train, "train_voc.py", expected=(NonFiniteLoss,))
