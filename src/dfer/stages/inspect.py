"""``dfer inspect PATH``: a readable summary of any artifact (Parquet or safetensors).

Prints the provenance block, the schema (or tensor keys, dtypes and shapes), the row count
and a few rows, so a person can check an intermediate result without writing code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from dfer.core.artifacts import read_meta
from dfer.core.integrity import DamagedArtifact, rebuild_hint, require


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="Parquet or safetensors artifacts")
    parser.add_argument("-n", "--rows", type=int, default=5, help="rows / tensors to show")


def run(args: argparse.Namespace) -> int:
    status = 0
    for path in args.paths:
        try:
            inspect_artifact(path, rows=args.rows, out=sys.stdout)
        except BrokenPipeError:
            # Output piped into `head` and closed: stop quietly, like other CLI tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return status
        except DamagedArtifact as exc:
            print(f"{path}: cannot inspect: {exc.problem}; {rebuild_hint(path)}", file=sys.stderr)
            status = 1
        except Exception as exc:  # noqa: BLE001 - any reader's complaint: one line, no traceback
            cause = str(exc) if isinstance(exc, (OSError, ValueError)) else f"{type(exc).__name__}: {exc}"
            print(f"{path}: cannot inspect: {' '.join(cause.split())}", file=sys.stderr)
            status = 1
    return status


def inspect_artifact(path: Path, rows: int = 5, out: TextIO = sys.stdout) -> None:
    """Print a summary of one artifact to ``out``; ``DamagedArtifact`` for a missing or
    damaged one (checked first, so that no reader's traceback stands for it)."""
    if not path.exists():
        raise FileNotFoundError(f"no such artifact: {path}")
    if path.suffix in (".parquet", ".safetensors"):
        require(path)
    print(f"== {path} ({path.stat().st_size:,} bytes)", file=out)
    meta = read_meta(path)
    print("provenance:", file=out)
    print(_indent(json.dumps(meta, indent=2, sort_keys=True) if meta else "(none)"), file=out)
    if path.suffix == ".safetensors":
        _inspect_safetensors(path, rows, out)
    elif path.suffix == ".parquet":
        _inspect_parquet(path, rows, out)
    else:
        raise ValueError(f"unknown artifact type {path.suffix!r} (expected .parquet/.safetensors)")


def _inspect_parquet(path: Path, rows: int, out: TextIO) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    print("schema:", file=out)
    for field in pf.schema_arrow:
        print(f"  {field.name}: {field.type}", file=out)
    print(f"rows: {pf.metadata.num_rows:,}", file=out)
    if pf.metadata.num_rows and rows > 0:
        head = pf.read().slice(0, rows).to_pandas()
        with pd.option_context("display.width", 160, "display.max_columns", 20,
                               "display.max_colwidth", 48):
            print(_indent(head.to_string(index=False)), file=out)


def _inspect_safetensors(path: Path, rows: int, out: TextIO) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        keys = list(fh.keys())
        print(f"tensors: {len(keys):,}", file=out)
        for key in keys[:rows]:
            arr = fh.get_slice(key)
            dtype = _SAFETENSORS_DTYPES.get(arr.get_dtype(), arr.get_dtype())
            print(f"  {key}: {dtype} {list(arr.get_shape())}", file=out)
        if len(keys) > rows:
            print(f"  ... {len(keys) - rows:,} more", file=out)


_SAFETENSORS_DTYPES = {
    "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32",
    "U32": "uint32", "I64": "int64", "F16": "float16", "BF16": "bfloat16", "F32": "float32",
    "F64": "float64", "BOOL": "bool",
}


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
