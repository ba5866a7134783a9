"""``dfer captions``: describe the facial movements of each clip of one shard.

Runs in the project venv for the ``offline`` and ``openai`` backends and in the separate vLLM
environment (with ``src/`` on ``PYTHONPATH``) for ``vllm``; see docs/captions.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=Path, required=True, help="frames/shard-{s}.safetensors")
    parser.add_argument("--index", type=Path, required=True, help="frames/shard-{s}.parquet")
    parser.add_argument("--landmarks", type=Path, required=True, help="landmarks/shard-{s}.parquet")
    parser.add_argument("--out", type=Path, required=True, help="captions/shard-{s}.parquet")
    parser.add_argument("--out-failures", type=Path, required=True,
                        help="captions/shard-{s}.failures.parquet")
    parser.add_argument("--params", default="{}", help="the config's `captions` section as JSON")


def run(args: argparse.Namespace) -> int:
    from dfer.captions.shard import run_shard
    from dfer.core.integrity import require

    require([args.frames, args.index, args.landmarks])  # before any model loads
    summary = run_shard(args.frames, args.index, args.landmarks, args.out, args.out_failures,
                        json.loads(args.params))
    print(f"captions {args.out}: {json.dumps(summary, sort_keys=True)}", file=sys.stderr)
    return 0
