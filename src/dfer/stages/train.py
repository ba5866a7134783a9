"""``dfer train``: fit FineCLIPER on one fold of one dataset (one Snakemake job per fold).

Writes ``{out}/checkpoint.safetensors`` (tunable weights + model config + labels),
``{out}/train.json`` (clip counts, final metrics, parameter counts, seconds) and
``{out}/logs/`` (CSV, plus TensorBoard when installed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dfer.paths import TRAIN_SUMMARY


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, required=True, help="results folder (holds {dataset}/...)")
    parser.add_argument("--dataset", required=True, help="dataset to train on")
    parser.add_argument("--fold", type=int, required=True, help="test fold k: trains on test_fold != k")
    parser.add_argument("--run", required=True, help="run name (train.runs.<name> in the config)")
    parser.add_argument("--out", type=Path, required=True, help="fold folder, e.g. train/{run}/fold-{k}")
    parser.add_argument("--params", default="{}", help="the run's config block as JSON")


def run(args: argparse.Namespace) -> int:
    from dfer.train.fit import train_fold

    params = json.loads(args.params)
    params = {k: v for k, v in params.items() if k not in ("datasets", "folds")}
    params["dataset"] = args.dataset
    ckpt = train_fold(args.results, args.dataset, args.fold, args.run, params, args.out)
    summary = json.loads((args.out / TRAIN_SUMMARY).read_text())
    final = summary.get("final_metrics", {})
    print(
        f"train {args.dataset} {args.run} fold {args.fold}: {ckpt} "
        f"({summary['num_train_clips']} clips, {summary['epochs']} epochs, {summary['seconds']:.1f} s, "
        f"val UAR {final.get('val/uar', float('nan')):.3f})",
        file=sys.stderr,
    )
    return 0
