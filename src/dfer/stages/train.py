"""``dfer train``: fit FineCLIPER on one fold of one dataset (one Snakemake job per fold).

Reads exactly the files given (``--manifest``, ``--frames``, ``--landmarks``, ``--parsing``,
``--captions``, ``--failures``: the rule's declared inputs, :func:`dfer.train.inputs.declared_files`);
``--results`` instead reads the files that function names under a results folder.
Writes ``{out}/checkpoint.safetensors`` (tunable weights + model config + labels),
``{out}/train.json`` (clip counts, final metrics, parameter counts, seconds) and
``{out}/logs/`` (CSV, plus TensorBoard when installed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dfer.core.paths import TRAIN_SUMMARY
from dfer.train.inputs import KINDS, DataInputs

#: the shard-file options, one per input kind (plus --manifest and --failures)
INPUT_KINDS = tuple(KINDS)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The options naming a job's input files (shared by ``dfer train`` and ``dfer evaluate``)."""
    parser.add_argument("--results", type=Path,
                        help="results folder: read the files a run needs from it (instead of the lists below)")
    parser.add_argument("--manifest", type=Path, help="the dataset's manifest.parquet")
    for kind in INPUT_KINDS:
        parser.add_argument(f"--{kind}", type=Path, nargs="*", default=[], metavar="FILE",
                            help=f"{kind} shard files (every shard, every suffix the model reads)")
    parser.add_argument("--failures", type=Path, nargs="*", default=[], metavar="FILE",
                        help="the read stages' shard-*.failures.parquet (which stage lost a clip)")


def inputs_from_args(args: argparse.Namespace) -> DataInputs | None:
    """The declared files as :class:`DataInputs`; None with ``--results`` (library lookup)."""
    if args.manifest is None:
        if args.results is None:
            raise SystemExit("give the input files (--manifest, --frames, ...) or --results")
        return None
    if args.results is not None:
        raise SystemExit("give either --results or the input files (--manifest, --frames, ...), not both")
    return DataInputs.from_files(args.dataset, args.manifest,
                                 {k: getattr(args, k) for k in INPUT_KINDS if getattr(args, k)}, args.failures)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
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
    inputs = inputs_from_args(args)
    ckpt = train_fold(args.results, args.dataset, args.fold, args.run, params, args.out, inputs=inputs)
    if ckpt is None:  # another process of a multi-process run: global rank 0 writes and reports
        return 0
    summary = json.loads((args.out / TRAIN_SUMMARY).read_text())
    final = summary.get("final_metrics", {})
    print(
        f"train {args.dataset} {args.run} fold {args.fold}: {ckpt} "
        f"({summary['num_train_clips']} clips, {summary['epochs']} epochs, {summary['seconds']:.1f} s, "
        f"val UAR {final.get('val/uar', float('nan')):.3f})",
        file=sys.stderr,
    )
    return 0
