"""``dfer evaluate``: metrics of a trained fold, zero-shot transfer, or the mean over folds.

Evaluate: ``--checkpoint CKPT --dataset D --fold K --out DIR`` and the input files
(``--manifest``, ``--frames``, ... as for ``dfer train``, or ``--results R``) writes
``metrics.json`` (UAR, WAR, per-class accuracy, confusion matrix), ``predictions.parquet`` and
``confusion.png``. ``--split all`` scores every clip of D (zero-shot from another dataset: the
class names of D are scored through the text side). Summarize: ``--summarize M1 M2 ... --out
summary.json`` averages several folds' metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dfer.stages.train import add_input_arguments, inputs_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, help="checkpoint.safetensors from `dfer train`")
    add_input_arguments(parser)
    parser.add_argument("--dataset", help="dataset to evaluate on")
    parser.add_argument("--fold", type=int, default=1, help="test fold k (clips with test_fold == k)")
    parser.add_argument("--split", choices=["test", "all"], default="test",
                        help="test: clips of fold k; all: every clip (zero-shot)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (evaluate) or summary.json path (--summarize)")
    parser.add_argument("--params", default="{}",
                        help="JSON: {device, data: {...}, label_prompts: {label: text}}")
    parser.add_argument("--summarize", type=Path, nargs="+", metavar="METRICS_JSON",
                        help="average these folds' metrics.json into --out instead of evaluating")


def run(args: argparse.Namespace) -> int:
    if args.summarize:
        from dfer.train.evaluate import summarize_folds

        summary = summarize_folds(args.summarize, args.out)
        print(f"summary {args.out}: UAR {summary['uar']:.4f} WAR {summary['war']:.4f} "
              f"over {summary['num_folds']} fold(s), {summary['test_clips']['text']}", file=sys.stderr)
        return 0
    missing = [name for name in ("checkpoint", "dataset") if getattr(args, name) is None]
    if missing:
        print(f"dfer evaluate: missing --{', --'.join(missing)} (or use --summarize)", file=sys.stderr)
        return 2
    from dfer.train.evaluate import evaluate_checkpoint

    params = json.loads(args.params)
    unknown = sorted(set(params) - {"device", "data", "label_prompts"})
    if unknown:
        print(f"dfer evaluate: unknown --params key(s) {unknown}", file=sys.stderr)
        return 2
    metrics = evaluate_checkpoint(
        args.checkpoint, args.results, args.dataset, args.fold, args.out, split=args.split,
        device=params.get("device", "auto"), data=params.get("data"),
        label_prompts=params.get("label_prompts"), inputs=inputs_from_args(args),
    )
    print(f"evaluate {args.dataset} fold {args.fold}: UAR {metrics['uar']:.4f} WAR {metrics['war']:.4f}, "
          f"{metrics['test_clips']['text']} -> {args.out}", file=sys.stderr)
    return 0
