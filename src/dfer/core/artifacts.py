"""Atomic, self-describing artifact I/O shared by every stage.

Every artifact the pipeline writes (Parquet tables, safetensors shards) carries a JSON
provenance block (schema version, stage, backend, model, params) so that a person who opens
it later can tell how it was made, and is written to a temporary file in the same directory
and renamed into place, so that a killed stage never leaves a half-written file behind.
Nothing time-dependent goes into the metadata: re-running a stage gives identical bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dfer import __version__

#: Key under which dfer stores its provenance JSON in Parquet / safetensors metadata.
META_KEY = "dfer"

#: The header entry safetensors keeps for a file's metadata: never a tensor key (clip id).
SAFETENSORS_RESERVED = "__metadata__"

#: Columns of every stage's per-clip failures table.
FAILURE_COLUMNS = ("clip_id", "stage", "source", "error_type", "message")


def provenance(stage: str, schema_version: int, **fields: Any) -> dict[str, Any]:
    """Build the provenance block stored in an artifact's metadata."""
    block: dict[str, Any] = {
        "stage": stage,
        "schema_version": schema_version,
        "dfer_version": __version__,
    }
    block.update(fields)
    return block


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read at each write (a long-lived process may change it).

    Linux states it in ``/proc/self/status``; elsewhere ``os.umask`` is set and restored under
    a lock (the only way POSIX offers to read it).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def artifact_mode() -> int:
    """Permission bits of every artifact: what ``open()`` would give a new file (0o666 & ~umask)."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary file lives in the destination directory so the final ``os.replace`` is an
    atomic rename on the same filesystem. On any exception the temporary file is removed and
    ``path`` is left untouched (an older complete version, or nothing).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            # mkstemp makes owner-only files, and some writers (safetensors' save_file) make
            # a fresh owner-only file of their own: whatever wrote it, the artifact gets the
            # usual umask-derived mode, so a results folder shared by a group stays readable.
            os.fchmod(fh.fileno(), artifact_mode())
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # e.g. ENOSPC from a writer that does not say which file: name the artifact
            raise OSError(exc.errno, exc.strerror or str(exc), str(dest)) from exc
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_bytes_if_changed(path: str | os.PathLike[str], data: bytes) -> bool:
    """Write ``data`` atomically unless ``path`` already holds exactly these bytes.

    Keeping the old file (and its mtime) when nothing changed is what lets Snakemake re-run
    only the shards whose content changed. Returns True when the file was (re)written.
    """
    dest = Path(path)
    if dest.exists() and dest.read_bytes() == data:
        return False
    write_bytes_atomic(dest, data)
    return True


def _to_table(data: pd.DataFrame | pa.Table, schema: pa.Schema | None) -> pa.Table:
    if isinstance(data, pa.Table):
        return data.cast(schema) if schema is not None else data
    return pa.Table.from_pandas(data, schema=schema, preserve_index=False)


def table_with_provenance(
    data: pd.DataFrame | pa.Table, meta: Mapping[str, Any], schema: pa.Schema | None = None
) -> pa.Table:
    """Return ``data`` as an Arrow table whose schema metadata holds ``meta`` under ``dfer``."""
    table = _to_table(data, schema)
    existing = dict(table.schema.metadata or {})
    existing.pop(b"pandas", None)  # pandas metadata embeds versions; keep artifacts stable
    existing[META_KEY.encode()] = json.dumps(meta, sort_keys=True, default=str).encode()
    return table.replace_schema_metadata(existing)


def write_parquet(
    path: str | os.PathLike[str],
    data: pd.DataFrame | pa.Table,
    meta: Mapping[str, Any],
    schema: pa.Schema | None = None,
) -> Path:
    """Write a Parquet table atomically with provenance metadata; returns the path."""
    table = table_with_provenance(data, meta, schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def parquet_bytes(data: pd.DataFrame | pa.Table, meta: Mapping[str, Any],
                  schema: pa.Schema | None = None) -> bytes:
    """Serialise a table to Parquet bytes (deterministic), e.g. for ``write_bytes_if_changed``."""
    table = table_with_provenance(data, meta, schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a Parquet artifact into pandas (``DamagedArtifact`` when missing or damaged)."""
    from dfer.core.integrity import require

    require(path)
    return pq.read_table(path).to_pandas()


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the dfer provenance block of a Parquet or safetensors artifact ({} if none);
    ``DamagedArtifact`` when it is missing or damaged."""
    from dfer.core.integrity import require

    require(path)
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(p), framework="numpy") as fh:
            raw = (fh.metadata() or {}).get(META_KEY)
    else:
        md = pq.read_schema(p).metadata or {}
        raw = md.get(META_KEY.encode())
    return json.loads(raw) if raw else {}


def write_safetensors(
    path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> Path:
    """Write numpy arrays as a safetensors shard atomically, with provenance metadata.

    Keys are clip ids; readers open shards with ``safe_open`` so that a single clip is
    memory-mapped without loading the whole shard.
    """
    from safetensors.numpy import save_file

    if SAFETENSORS_RESERVED in tensors:  # the file would hold the key twice: no reader opens it
        raise ValueError(f"{path}: the key {SAFETENSORS_RESERVED!r} is reserved by safetensors "
                         "for the file's metadata; no tensor may be stored under it")
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    metadata = {META_KEY: json.dumps(meta, sort_keys=True, default=str)}
    with atomic_path(path) as tmp:
        if arrays:
            save_file(arrays, str(tmp), metadata=metadata)
        else:
            _write_empty_safetensors(tmp, metadata)
    return Path(path)


def _write_empty_safetensors(path: Path, metadata: Mapping[str, str]) -> None:
    """safetensors refuses an empty dict; an all-failed shard still needs a valid file."""
    header = json.dumps({SAFETENSORS_RESERVED: dict(metadata)}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header)


def failures_frame(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Normalise per-clip failure records into the failures table layout."""
    frame = pd.DataFrame(list(rows), columns=list(FAILURE_COLUMNS))
    return frame.astype({c: "string" for c in FAILURE_COLUMNS})


FAILURES_SCHEMA = pa.schema([(c, pa.string()) for c in FAILURE_COLUMNS])


def write_failures(
    path: str | os.PathLike[str], rows: list[Mapping[str, Any]], meta: Mapping[str, Any]
) -> Path:
    """Write a stage's per-clip failure records (possibly none) atomically."""
    return write_parquet(path, failures_frame(rows), meta, schema=FAILURES_SCHEMA)
