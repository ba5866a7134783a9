"""``dfer landmarks``: 68-point landmarks for the decoded frames of one shard."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=Path, required=True, help="frames/shard-{s}.safetensors")
    parser.add_argument("--index", type=Path, required=True, help="frames/shard-{s}.parquet")
    parser.add_argument("--out", type=Path, required=True, help="landmarks/shard-{s}.parquet")
    parser.add_argument("--out-failures", type=Path, required=True,
                        help="landmarks/shard-{s}.failures.parquet")
    parser.add_argument("--params", default="{}",
                        help="the config's `landmarks` section as JSON")


def run(args: argparse.Namespace) -> int:
    from dfer.core.integrity import require
    from dfer.landmarks import run_shard

    require([args.frames, args.index])  # before any model loads: one line naming a bad input
    summary = run_shard(args.frames, args.index, args.out, args.out_failures, json.loads(args.params))
    print(f"landmarks {args.out}: {json.dumps(summary, sort_keys=True)}", file=sys.stderr)
    return 0
