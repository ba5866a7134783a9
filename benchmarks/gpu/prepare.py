"""Download the wheels the GPU benchmark needs into ``benchmarks/gpu/wheels/`` (run it here).

The lent GPU machine has Python 3.12, PyTorch, Lightning, timm and transformers but no
internet and none of dfer's other dependencies, so the wheels travel with the working tree
(the ``device`` tool's ``carry``). Only pure-Python or small wheels are fetched, without their
dependencies (``--no-deps``): ``run.py`` imports face-alignment's FAN and facer's FaRL model
straight from their module files, so their heavy dependencies (OpenCV, scikit-image, numba)
are never needed. The folder must stay under 60 MiB (the carry limit is 64 MiB in all).

    python benchmarks/gpu/prepare.py            # then: see benchmarks/gpu/README.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEELS = HERE / "wheels"
#: What the GPU machine lacks. pandas + pyarrow (with pandas' small helpers) serve the
#: DataLoader measurement (dfer.train.data reads Parquet); the rest the model and face parts.
PACKAGES = ("open_clip_torch", "ftfy", "wcwidth", "face-alignment", "pyfacer", "pandas", "pyarrow",
            "python-dateutil", "pytz", "tzdata", "six")
LIMIT_MIB = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=WHEELS)
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python")
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", args.python_version, "--implementation", "cp",
           "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
           "--platform", "any", "-d", str(args.dest), *PACKAGES]
    subprocess.run(cmd, check=True)
    total = sum(p.stat().st_size for p in args.dest.glob("*.whl")) / 2**20
    print(f"{args.dest}: {len(list(args.dest.glob('*.whl')))} wheels, {total:.1f} MiB")
    if total > LIMIT_MIB:
        print(f"over the {LIMIT_MIB:.0f} MiB budget: remove old versions from {args.dest}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
