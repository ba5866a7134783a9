"""``dfer parsing``: canonical face-parsing label maps for the decoded frames of one shard."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=Path, required=True, help="frames/shard-{s}.safetensors")
    parser.add_argument("--index", type=Path, required=True, help="frames/shard-{s}.parquet")
    parser.add_argument("--landmarks", type=Path, required=True, help="landmarks/shard-{s}.parquet")
    parser.add_argument("--out-maps", type=Path, required=True, help="parsing/shard-{s}.safetensors")
    parser.add_argument("--out-index", type=Path, required=True, help="parsing/shard-{s}.parquet")
    parser.add_argument("--out-failures", type=Path, required=True,
                        help="parsing/shard-{s}.failures.parquet")
    parser.add_argument("--params", default="{}", help="the config's `parsing` section as JSON")


def run(args: argparse.Namespace) -> int:
    from dfer.core.integrity import require
    from dfer.parsing import run_shard

    require([args.frames, args.index, args.landmarks])  # before any model loads
    summary = run_shard(args.frames, args.index, args.landmarks, args.out_maps, args.out_index,
                        args.out_failures, json.loads(args.params))
    print(f"parsing {args.out_maps}: {json.dumps(summary, sort_keys=True)}", file=sys.stderr)
    return 0
