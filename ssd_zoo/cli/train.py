"""``ssd-zoo train DATA --from WEIGHTS``: a data folder and any weights in, a trained, evaluated detector out.

    ssd-zoo train my_yolo/data.yaml --from runs/demo/best.pth --out runs/mine     # fine-tune, by class name
    ssd-zoo train data/VOCdevkit --from ssd300_vgg16.COCO_V1 --epochs 10 --device cuda --amp
    ssd-zoo train coco_folder/ --out runs/small            # no --from: the demo's small model from scratch
    ssd-zoo train my_yolo/data.yaml --out runs/mine --resume                    # continue runs/mine/last.pth

DATA is a VOC folder, a COCO .json (or a folder of them) or a YOLO data.yaml (or its folder), told apart by what
is there. Writes ``OUT/last.pth``, ``OUT/best.pth``, ``OUT/metrics.json`` (``map_voc07``...) and ``OUT/pictures/``.
The config comes from :func:`ssd_zoo.train.from_data.config_for_data`; the training is :func:`ssd_zoo.train.train`.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ssd_zoo.cli.args import Subparsers
from ssd_zoo.data import check_dataset
from ssd_zoo.files import save_atomic
from ssd_zoo.finetune.coverage_report import coverage_report
from ssd_zoo.train.config import TrainConfig, parse_override
from ssd_zoo.train.data import make_dataset, training_source
from ssd_zoo.train.engine import NonFiniteLoss, Program, train
from ssd_zoo.train.from_data import BATCH_SIZE, config_for_data
from ssd_zoo.train.model import build_model, with_default_boxes
from ssd_zoo.train.state import load_checkpoint

PROGRAM = Program("ssd-zoo train", "ssd-zoo train")


def add(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("train", help="train a detector on a VOC, COCO or YOLO dataset, from any weights",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="a VOC folder, a COCO .json (or a folder of them) or a YOLO data.yaml (or its folder)")
    p.add_argument("--from", dest="weights", help="weights to start from: a published name (ssd300_vgg16.COCO_V1), a "
                   "checkpoint (a training run's best.pth, any layout ssd_zoo reads) or a URL; default: from scratch")
    p.add_argument("--model", help="the registered model, where --from cannot say (a bare name such as COCO_V1)")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="where best.pth, last.pth, metrics.json and "
                   "pictures/ go (runs/train)")
    p.add_argument("--epochs", type=int, help="passes over the training split (default: enough for 600 steps "
                   "fine-tuning, 5000 from scratch)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"images a step ({BATCH_SIZE})")
    p.add_argument("--input-size", type=int, help="the input side in pixels, where the model takes any (model 'ssd')")
    p.add_argument("--resume", nargs="?", const=True, metavar="CHECKPOINT",
                   help="continue a run exactly: from CHECKPOINT, or OUT/last.pth")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when there is one)")
    p.add_argument("--amp", action="store_true", help="fp16 + GradScaler on CUDA, bf16 autocast on the CPU")
    p.add_argument("--fit-anchors", action="store_true", help="fit the default boxes to the training boxes first")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (0: in the training process)")
    p.add_argument("--no-check", action="store_true", help="skip the data check (ssd-zoo data-check) before training")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any training config key (ssd_zoo.train.config.TrainConfig), e.g. --set lr=0.001")
    p.set_defaults(run=run)


def _resumed(args: argparse.Namespace) -> tuple[TrainConfig, dict, Path]:
    """The config, checkpoint and its path of ``--resume``: the run goes on as it was configured."""
    path = args.out / "last.pth" if args.resume is True else Path(args.resume)
    checkpoint = load_checkpoint(path)
    named = {"device": args.device, "amp": args.amp or None}
    overrides = {**dict(parse_override(item) for item in args.set), **{k: v for k, v in named.items() if v is not None}}
    return dataclasses.replace(TrainConfig(**checkpoint["config"]), **overrides), checkpoint, path


def _fit_anchors(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with default boxes fitted to its training boxes (the report printed). Weights to start from are
    carried into the model with the fitted boxes first and saved as ``OUT/start.pth``, the run's ``init_weights``."""
    names = list(make_dataset(cfg, train=True).class_names)
    model = build_model(cfg, len(names) + 1, names)
    report = coverage_report(model, training_source(cfg), splits=cfg.train_splits, keep_difficult=cfg.keep_difficult,
                             pad_to_square=cfg.pad_to_square, fit_boxes=True, snippet_kwargs=cfg.model_kwargs)
    print(report.text())
    if report.note:
        raise ValueError(f"--fit-anchors: {report.note.removeprefix('note: ')}")
    fitted = dataclasses.replace(cfg, model_kwargs={**cfg.model_kwargs, **report.fitted.model_kwargs()})
    if cfg.init_weights is None:
        return fitted
    start = Path(cfg.output_dir) / "start.pth"
    start.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(with_default_boxes(model, fitted).state_dict(), start)
    print(f"--fit-anchors: {cfg.init_weights} with the fitted default boxes -> {start} (the run starts from it)")
    return dataclasses.replace(fitted, init_weights=str(start))


def run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        cfg, checkpoint, path = _resumed(args)
    else:
        cfg = config_for_data(args.data, weights=args.weights, model=args.model, out=args.out, epochs=args.epochs,
                              batch_size=args.batch_size, input_size=args.input_size, device=args.device,
                              amp=args.amp, workers=args.workers, extra=dict(parse_override(i) for i in args.set))
        checkpoint = path = None
        if not args.no_check:
            print(check_dataset(cfg.data, cfg.input_size or 300, pad_to_square=cfg.pad_to_square))
        if args.fit_anchors:
            cfg = _fit_anchors(cfg)
    try:
        result = train(cfg, checkpoint, path, PROGRAM)
    except NonFiniteLoss as error:  # the data's or the settings', not the code's: one line
        raise SystemExit(str(error)) from None
    out = Path(cfg.output_dir)
    print(f"VOC07 mAP {result.metrics['map_voc07'] or 0:.4f} on {cfg.test_split}; wrote {out / 'best.pth'}, "
          f"{out / 'last.pth'}, {out / 'metrics.json'} and {out / 'pictures'}/")
    return 0
