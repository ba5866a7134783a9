"""The one shard runner every stage plugs its per-clip function into.

Each shard job of the pipeline (decode, landmarks, parsing, captions) does the same thing
around its own per-clip work: remove temp files a killed earlier run left behind, walk the
shard's clips with a progress bar, turn each clip that cannot be processed into a row of the
failures table (one ``error_type`` vocabulary for all stages) while the rest of the shard
completes, count what happened, write every output atomically and log the outcome. That
skeleton lives here once, so a fix to it (or a new stage) needs no copy in four places.

Only the standard library, numpy/pyarrow (through :mod:`dfer.core.artifacts`) and tqdm are
imported, so the captions stage can use the runner in the separate vLLM environment.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from dfer.core.artifacts import FAILURES_SCHEMA, failures_frame, write_parquet, write_safetensors
from dfer.core.integrity import require

log = logging.getLogger(__name__)

T = TypeVar("T")


class ErrorType(StrEnum):
    """Why a clip has no output: the ``error_type`` column of every failures table.

    A small closed set, so that failures can be counted and filtered across stages and
    backends; the specific cause (an HTTP status, an exception's type) goes in the message.
    """

    MISSING_FILE = "missing_file"
    UNREADABLE = "unreadable"
    EMPTY_FILE = "empty_file"
    CORRUPT = "corrupt"
    TRUNCATED = "truncated"
    NO_VIDEO_STREAM = "no_video_stream"
    NO_FRAMES = "no_frames"
    TOO_SMALL = "too_small"
    DECODE_ERROR = "decode_error"
    NO_FACE = "no_face"
    MISSING_FRAMES = "missing_frames"
    MISSING_LANDMARKS = "missing_landmarks"
    BAD_INPUT = "bad_input"
    BACKEND_ERROR = "backend_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    EMPTY_ANSWER = "empty_answer"
    EMPTY_AFTER_REFINEMENT = "empty_after_refinement"
    UNEXPECTED = "unexpected"


_VOCABULARY = frozenset(e.value for e in ErrorType)

#: One line per ``error_type``: what it means (docs/architecture.md, "Failure records").
ERROR_MEANINGS: dict[ErrorType, str] = {
    ErrorType.MISSING_FILE: "the clip's file or frame folder does not exist",
    ErrorType.UNREADABLE: "the file exists but cannot be opened (permissions, not a file)",
    ErrorType.EMPTY_FILE: "a zero-length file",
    ErrorType.CORRUPT: "the container or an image cannot be parsed, or no frame decodes",
    ErrorType.TRUNCATED: "the container promises more frames than can be decoded",
    ErrorType.NO_VIDEO_STREAM: "the file opens but holds no video stream (e.g. audio only)",
    ErrorType.NO_FRAMES: "a frame folder without images, or a video stream without frames",
    ErrorType.TOO_SMALL: "the frames are too small to find a face in (under 16 px a side)",
    ErrorType.DECODE_ERROR: "the source cannot be decoded for another reason the message names",
    ErrorType.NO_FACE: "no face detected on (enough of) the clip's frames",
    ErrorType.MISSING_FRAMES: "the clip is in the index but not in the frames tensor shard",
    ErrorType.MISSING_LANDMARKS: "the clip has no rows in the landmarks shard",
    ErrorType.BAD_INPUT: "the clip's arrays are unusable (shape, dtype, too short)",
    ErrorType.BACKEND_ERROR: "the model or server failed (cause, e.g. HTTP status, in the message)",
    ErrorType.TIMEOUT: "no answer in time, after all retries",
    ErrorType.CONNECTION_ERROR: "the server could not be reached, after all retries",
    ErrorType.EMPTY_ANSWER: "the model answered nothing",
    ErrorType.EMPTY_AFTER_REFINEMENT: "the caption was nothing but emotion words once refined",
    ErrorType.UNEXPECTED: "any other exception (its type name starts the message's cause)",
}


class ClipFailure(Exception):
    """Raised by a per-clip function to fail one clip with a chosen ``error_type``.

    ``source`` overrides the shard's ``source`` for this row, for a stage whose clips can
    fail on different inputs (captions: the frames shard, or the backend's answer).
    """

    def __init__(self, error_type: ErrorType | str, message: str,
                 source: str | None = None) -> None:
        super().__init__(message)
        self.error_type = ErrorType(error_type)
        self.source = source


#: Exception classes a stage maps to an ``error_type`` (checked in order, with isinstance).
ErrorMap = Sequence[tuple[type[BaseException], ErrorType]]

#: What the runner concludes from exceptions without a (known) ``error_type`` attribute.
#: ``ValueError`` is how every per-clip API rejects arrays it cannot use; a ``KeyError`` is
#: not trusted to mean a missing tensor (a bug raises it too): :class:`FrameShard` checks
#: membership itself and fails the clip with ``missing_frames``.
DEFAULT_ERRORS: ErrorMap = (
    (TimeoutError, ErrorType.TIMEOUT),
    (ConnectionError, ErrorType.CONNECTION_ERROR),
    (FileNotFoundError, ErrorType.MISSING_FILE),
    (ValueError, ErrorType.BAD_INPUT),
)


def classify(exc: BaseException, known: ErrorMap = ()) -> tuple[ErrorType, str]:
    """``(error_type, message cause)`` of a per-clip exception.

    An ``error_type`` attribute from the vocabulary wins (``DecodeError`` subclasses,
    :class:`ClipFailure`); then the stage's ``known`` map, then :data:`DEFAULT_ERRORS`;
    anything else is ``unexpected``, with the exception's type name kept in the message.
    """
    attr = getattr(exc, "error_type", None)
    if isinstance(attr, str) and attr in _VOCABULARY:
        return ErrorType(attr), str(exc)
    for cls, error_type in (*known, *DEFAULT_ERRORS):
        if isinstance(exc, cls):
            return error_type, str(exc)
    return ErrorType.UNEXPECTED, f"{type(exc).__name__}: {exc}"


def failure_row(clip_id: str, stage: str, source: str, error_type: ErrorType | str,
                message: str) -> dict[str, str]:
    """The one way a failures-table row is built (columns: ``dfer.core.artifacts.FAILURE_COLUMNS``).

    ``error_type`` must be in :class:`ErrorType` (a typo would split the counts); the message
    always starts with ``clip <id>: `` so that a log line alone says which clip it is about.
    """
    prefix = f"clip {clip_id}: "
    return {"clip_id": str(clip_id), "stage": stage, "source": str(source),
            "error_type": ErrorType(error_type).value,
            "message": message if message.startswith(prefix) else prefix + message}


@dataclass
class ShardRun(Generic[T]):
    """What a shard's clip loop produced: per-clip results (in clip order) and failure rows."""

    stage: str
    shard: str
    results: dict[str, T] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)

    def fail(self, clip_id: str, source: str, error_type: ErrorType | str, message: str) -> None:
        """Record one failed clip."""
        self.failures.append(failure_row(clip_id, self.stage, source, error_type, message))

    def failure_counts(self) -> dict[str, int]:
        """``error_type`` -> number of failed clips, sorted by type (stable provenance)."""
        counts: dict[str, int] = {}
        for row in self.failures:
            counts[row["error_type"]] = counts.get(row["error_type"], 0) + 1
        return dict(sorted(counts.items()))

    def failures_table(self) -> pd.DataFrame:
        """The failure rows in the failures-table layout (valid when there are none)."""
        return failures_frame(self.failures)


#: One clip id -> where its input came from (the ``source`` column of failure rows).
Source = str | Callable[[str], str]


def _source_of(source: Source, clip_id: str) -> str:
    return source(clip_id) if callable(source) else source


def shard_label(path: str | os.PathLike[str]) -> str:
    """``shard-000`` for ``.../shard-000.safetensors``: how progress bars and logs name a shard."""
    return Path(path).name.split(".", 1)[0]


def run_clips(
    stage: str,
    shard: str,
    clip_ids: Sequence[str],
    process: Callable[[str], T],
    *,
    source: Source,
    known: ErrorMap = (),
    progress: bool = True,
) -> ShardRun[T]:
    """Run ``process`` on every clip; an exception fails that clip only, never the shard.

    ``process`` may raise :class:`ClipFailure` to choose the ``error_type``; any other
    exception is classified by :func:`classify` with the stage's ``known`` map. A clip enters
    ``results`` only when ``process`` returned, so no half-processed clip reaches an output.
    """
    def attempt(batch: list[str]) -> list[T | BaseException]:
        try:
            return [process(batch[0])]
        except Exception as exc:  # noqa: BLE001 - one bad clip must not sink the shard
            if classify(exc, known)[0] is ErrorType.UNEXPECTED:  # a bug: keep its traceback
                log.exception("clip %s: unexpected error in %s", batch[0], stage)
            return [exc]

    return run_batches(stage, shard, clip_ids, attempt, batch_size=1, source=source,
                       known=known, progress=progress)


def run_batches(
    stage: str,
    shard: str,
    clip_ids: Sequence[str],
    process_batch: Callable[[list[Any]], Sequence[T | BaseException]],
    *,
    batch_size: int,
    source: Source,
    known: ErrorMap = (),
    progress: bool = True,
    prepare: Callable[[str], Any] | None = None,
) -> ShardRun[T]:
    """Run ``process_batch`` on consecutive batches of ``batch_size`` clips.

    For backends that work on many clips at once (a GPU batch, requests in flight):
    ``process_batch`` returns one entry per clip of the batch, in order, each a result or the
    exception that failed that clip. An exception raised by the batch call itself is not a
    clip's failure (a dead engine, a bug) and propagates; so does an answer of the wrong
    length, which would otherwise pair results with the wrong clips.

    ``prepare`` (optional) turns one clip id into the input ``process_batch`` receives in its
    place (reading the clip's arrays); a clip whose preparation raises fails alone and the
    rest of its batch goes on. Without it ``process_batch`` receives the clip ids.
    """
    from tqdm import tqdm

    run: ShardRun[T] = ShardRun(stage, shard)
    size = max(1, int(batch_size))
    with tqdm(total=len(clip_ids), desc=f"{stage} {shard}", unit="clip",
              disable=not progress) as bar:
        for start in range(0, len(clip_ids), size):
            batch = [str(c) for c in clip_ids[start:start + size]]
            for clip_id, outcome in _batch_outcomes(stage, shard, batch, process_batch, prepare):
                if isinstance(outcome, BaseException):
                    error_type, message = classify(outcome, known)
                    where = outcome.source if isinstance(outcome, ClipFailure) else None
                    run.fail(clip_id, where or _source_of(source, clip_id), error_type, message)
                else:
                    run.results[clip_id] = outcome
            bar.update(len(batch))
    return run


def _batch_outcomes(
    stage: str,
    shard: str,
    batch: list[str],
    process_batch: Callable[[list[Any]], Sequence[T | BaseException]],
    prepare: Callable[[str], Any] | None,
) -> list[tuple[str, T | BaseException]]:
    """``(clip id, result or exception)`` for every clip of one batch, in batch order."""
    outcomes: dict[str, T | BaseException] = {}
    inputs: dict[str, Any] = {}
    for clip_id in batch:
        if prepare is None:
            inputs[clip_id] = clip_id
            continue
        try:
            inputs[clip_id] = prepare(clip_id)
        except Exception as exc:  # noqa: BLE001 - a clip whose input cannot be read fails alone
            outcomes[clip_id] = exc
    ready = list(inputs)
    answers = list(process_batch([inputs[c] for c in ready])) if ready else []
    if len(answers) != len(ready):
        raise RuntimeError(f"{stage} {shard}: {len(answers)} result(s) for a batch "
                           f"of {len(ready)} clip(s)")
    outcomes.update(zip(ready, answers, strict=True))
    return [(clip_id, outcomes[clip_id]) for clip_id in batch]


def index_clip_ids(index_path: str | os.PathLike[str]) -> list[str]:
    """Clip ids of a decode index, in index order (the order every shard output follows)."""
    import pyarrow.parquet as pq

    require(index_path)  # a missing or damaged index: one line naming it and its rebuild
    return [str(c) for c in pq.read_table(index_path, columns=["clip_id"]).column("clip_id").to_pylist()]


class FrameShard:
    """A frames safetensors shard opened for per-clip reads (memory-mapped, one clip at a time).

    :meth:`get` fails a clip listed in the index but absent from the tensors with
    ``missing_frames`` (a decode output that lost a clip), not with a bare ``KeyError``.
    """

    def __init__(self, handle: Any, path: str | os.PathLike[str]) -> None:
        self._handle = handle
        self._keys = set(handle.keys())
        self.path = str(path)

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._keys

    def get(self, clip_id: str) -> np.ndarray:
        """The clip's frames tensor; ``ClipFailure(missing_frames)`` when it is absent."""
        if clip_id not in self._keys:
            raise ClipFailure(ErrorType.MISSING_FRAMES,
                              f"in the index but not in the frames shard {self.path}")
        return self._handle.get_tensor(clip_id)


@contextlib.contextmanager
def open_frames(path: str | os.PathLike[str]) -> Iterator[FrameShard]:
    """Open a frames shard for the duration of a clip loop."""
    from safetensors import safe_open

    require(path)
    with safe_open(str(path), framework="numpy") as handle:
        yield FrameShard(handle, path)


@dataclass(frozen=True)
class Output:
    """One artifact of a shard: where, what (tensors by clip id, or a table) and its provenance."""

    path: str | os.PathLike[str]
    data: Mapping[str, np.ndarray] | pa.Table | pd.DataFrame
    meta: Mapping[str, Any]
    schema: pa.Schema | None = None

    def write(self) -> Path:
        """Write atomically through :mod:`dfer.core.artifacts` (safetensors by suffix, else Parquet)."""
        if Path(self.path).suffix == ".safetensors":
            assert isinstance(self.data, Mapping), f"{self.path}: tensors must be a mapping"
            return write_safetensors(self.path, self.data, self.meta)
        assert not isinstance(self.data, Mapping), f"{self.path}: expected a table"
        return write_parquet(self.path, self.data, self.meta, schema=self.schema)


def failures_output(run: ShardRun[Any], path: str | os.PathLike[str],
                    meta: Mapping[str, Any]) -> Output:
    """The shard's failures table as an :class:`Output` (written even when empty)."""
    return Output(path, run.failures_table(), meta, FAILURES_SCHEMA)


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files a killed earlier run left next to ``path`` (``.{name}.*.tmp``).

    ``dfer.core.artifacts.atomic_path`` cleans up after exceptions, but a SIGKILL (OOM killer,
    cluster pre-emption) leaves its hidden temp file behind; one job owns each output, so any
    such file is an orphan, and a large one (a frames shard) is worth reclaiming.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if stale:
        log.warning("removed %d temp file(s) of an interrupted run next to %s", len(stale), path)
    return stale


def prepare_outputs(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Before a shard runs: remove what killed earlier runs left next to its outputs."""
    for path in paths:
        remove_stale_temps(path)


def finish_shard(run: ShardRun[Any], outputs: Sequence[Output]) -> None:
    """Write ``outputs`` in the given order, then log one warning per failure and the counts.

    Each file is replaced atomically; a stage lists the file readers open first (its
    Snakemake target) last, so a complete one always comes with the others.
    """
    for output in outputs:
        output.write()
    for row in run.failures:
        log.warning("%s (%s)", row["message"], row["error_type"])
    log.info("%s %s: %d clip(s) done, %d failed", run.stage, run.shard, len(run.results),
             len(run.failures))
