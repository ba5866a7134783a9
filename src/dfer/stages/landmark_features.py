"""``dfer landmark-features``: landmark feature maps (MobileFaceNet conv_4 or pooled FAN heat
maps) for the decoded frames of one shard."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=Path, required=True, help="frames/shard-{s}.safetensors")
    parser.add_argument("--index", type=Path, required=True, help="frames/shard-{s}.parquet")
    parser.add_argument("--out", type=Path, required=True,
                        help="landmark_features/shard-{s}.safetensors")
    parser.add_argument("--out-index", type=Path, required=True,
                        help="landmark_features/shard-{s}.parquet")
    parser.add_argument("--out-failures", type=Path, required=True,
                        help="landmark_features/shard-{s}.failures.parquet")
    parser.add_argument("--params", default="{}",
                        help="the config's `landmark_features` section as JSON")


def run(args: argparse.Namespace) -> int:
    from dfer.landmark_features import run_shard

    summary = run_shard(args.frames, args.index, args.out, args.out_index, args.out_failures,
                        json.loads(args.params))
    print(f"landmark-features {args.out}: {json.dumps(summary, sort_keys=True)}", file=sys.stderr)
    return 0
