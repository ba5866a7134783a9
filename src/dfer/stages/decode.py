"""``dfer decode``: decode, face-crop and resize the sampled frames of one shard.

Thin wrapper over ``dfer.video.decode_shard``; the Snakemake rule passes explicit paths and
the ``decode`` config section as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, required=True, help="shard manifest (Parquet)")
    parser.add_argument("--out-frames", type=Path, required=True,
                        help="output safetensors shard (key clip_id -> uint8 [T, S, S, 3])")
    parser.add_argument("--out-index", type=Path, required=True, help="output frames index (Parquet)")
    parser.add_argument("--out-failures", type=Path, required=True,
                        help="output per-clip failures table (Parquet)")
    parser.add_argument("--params", default="{}",
                        help="the decode config section as JSON (defaults for missing keys)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for video decoding and OpenCV; 0: one per core. Default: "
                             "OMP_NUM_THREADS when set (Snakemake sets it to the job's threads), "
                             "else 0")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def job_threads(given: int | None) -> int:
    """``--threads`` when given, else ``OMP_NUM_THREADS`` (Snakemake sets it to each job's
    ``threads``; torch follows it in the other stages), else 0 (one per core)."""
    if given is not None:
        return given
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() else 0


def run(args: argparse.Namespace) -> int:
    from dfer.video import DecodeConfig, decode_shard

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = DecodeConfig.from_params(json.loads(args.params))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        print(f"dfer decode: bad --params: {exc}", file=sys.stderr)
        return 2
    threads = job_threads(args.threads)
    if threads < 0:
        print(f"dfer decode: --threads must be >= 0 (0: one per core), got {threads}",
              file=sys.stderr)
        return 2
    if threads:
        import cv2

        # OpenCV's resize and colour conversions would otherwise start a thread per core in
        # every one of the jobs Snakemake runs side by side
        cv2.setNumThreads(threads)
    try:
        result = decode_shard(args.manifest, args.out_frames, args.out_index,
                              args.out_failures, cfg, progress=not args.no_progress,
                              threads=threads)
    except OSError as exc:  # unreadable manifest, full disk: name the file, no traceback
        where = f" {exc.filename}" if exc.filename else ""
        print(f"dfer decode: cannot read or write{where}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    except ValueError as exc:  # a shard manifest without the columns decode needs
        print(f"dfer decode: {exc}", file=sys.stderr)
        return 1
    print(f"{args.manifest}: {result.summary()}", file=sys.stderr)
    return 0
