"""``ssd-zoo list``: the registered models and their published weights, with their metrics.

    ssd-zoo list "*512*" -v
"""
from __future__ import annotations

import argparse

from ssd_zoo.cli.args import Subparsers
from ssd_zoo.registry import list_models
from ssd_zoo.weights.published import get_model_weights, get_weights, list_weights


def add(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("list", help="registered models and their weights, with published metrics")
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern on model names (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print each file's URL and metric source")
    parser.set_defaults(run=run)


def _metric_text(metrics: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{bench} {name} {value}" for bench, values in metrics.items() for name, value in values.items())


def run(args: argparse.Namespace) -> int:
    rows = [("model", "weights", "dataset", "published metric", "layout")]
    details = []
    for model in list_models(args.pattern):
        names = list_weights(model)
        if not names:
            rows.append((model, "-", "", "", ""))
        for name in names:
            weights = get_weights(name)
            default = " (DEFAULT)" if get_model_weights(model).__members__.get("DEFAULT") is weights else ""
            meta = weights.meta
            rows.append((model, weights.name + default, meta.get("dataset", ""), _metric_text(meta.get("metrics", {})),
                         meta.get("layout", "")))
            details.append(f"  {name}: {weights.url}  (metric: {meta.get('metrics_source', '-')})")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    backbones = list_weights("vgg16_backbone")
    print(f"\nbackbone initialisation (ssd_zoo.weights.resolve.load_vgg16_backbone): {', '.join(backbones)}")
    if args.verbose:
        print("\n" + "\n".join(details))
    return 0
