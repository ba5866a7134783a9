"""Stand-in stage outputs for workflow tests that only plan or submit jobs.

The workflow checks every shard output's structure when it is parsed (``dfer.core.integrity``)
and removes the outputs of a job with an empty or cut-short file so that the job runs again.
A test that pretends a stage already ran must therefore leave files a real run could have
written: a Parquet file with no rows and a safetensors file with no tensors, not empty files.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import save_file


def write_stand_in(path: Path) -> None:
    """The smallest structurally sound file for ``path``'s kind (empty bytes for other kinds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(pa.table({"clip_id": pa.array([], pa.string())}), path)
    elif path.suffix == ".safetensors":
        save_file({}, str(path))
    else:
        path.write_bytes(b"")
