"""A stand-in GPU job: ``python gpu_probe.py --log FILE --name NAME [--seconds S] [--child]``.

It starts exactly as every ``python -m dfer`` job does (``dfer.cli.main``, whose first step
is the GPU placement of ``dfer.core.gpu_placement``) with one extra sub-command, ``probe``,
that appends ``start``/``end`` lines with the job's ``CUDA_VISIBLE_DEVICES`` and a clock
reading to a log, and sleeps in between. ``--child`` also runs one copy of itself as a child
process (as Lightning re-launches DDP ranks), which must inherit the GPUs, not take others.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--child", action="store_true")


def _line(log: Path, text: str) -> None:
    with open(log, "a", encoding="utf-8") as fh:  # one locked append per line: jobs share it
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(text + "\n")


def run(args: argparse.Namespace) -> int:
    ids = os.environ.get("CUDA_VISIBLE_DEVICES", "-")
    _line(args.log, f"start {args.name} {ids} {time.time():.6f} {os.getpid()}")
    if args.child:
        subprocess.run([sys.executable, str(HERE), "probe", "--log", str(args.log),
                        "--name", f"{args.name}.child", "--seconds", "0"], check=True)
    time.sleep(args.seconds)
    _line(args.log, f"end {args.name} {ids} {time.time():.6f} {os.getpid()}")
    return 0


if __name__ == "__main__":
    from dfer import cli

    sys.path.insert(0, str(HERE.parent))
    cli.COMMANDS["probe"] = ("gpu_probe", "stand-in GPU job (tests)")
    sys.exit(cli.main())
