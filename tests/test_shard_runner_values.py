"""The shard runner's failure rows, counts, logs and outputs, every field spelled out (issue 25).

tests/test_shard_runner.py checks the runner's behaviour; these tests pin every column of the
failure rows (``source`` included: where it comes from when a clip, a batch or its preparation
fails), the exact log lines, and the schema each output is written with.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dfer.core.artifacts import FAILURE_COLUMNS, FAILURES_SCHEMA, write_parquet
from dfer.core.shard_runner import (
    ClipFailure,
    ErrorType,
    Output,
    ShardRun,
    classify,
    failure_row,
    failures_output,
    finish_shard,
    index_clip_ids,
    open_frames,
    remove_stale_temps,
    run_batches,
    run_clips,
    shard_label,
)


class Odd(Exception):
    """An exception whose ``error_type`` is a string outside the vocabulary."""

    error_type = "CorruptVideo"


class Coded(Exception):
    """An exception whose ``error_type`` is not a string at all."""

    error_type = 404


def _process(clip_id: str) -> int:
    if clip_id == "shape":
        raise ValueError("expected [T, H, W, 3]")
    if clip_id == "answer":
        raise ClipFailure(ErrorType.EMPTY_ANSWER, "nothing said", source="/backend/answers")
    if clip_id == "odd":
        raise Odd("broken")
    if clip_id == "clip quirk":
        raise KeyError("k")
    return len(clip_id)


def test_every_column_of_the_failure_rows() -> None:
    """``source`` is the stage's source of the clip (a callable of the clip id, or a fixed
    string), unless the clip's ClipFailure names its own; messages start with ``clip <id>: ``."""
    run = run_clips("captions", "shard-003", ["ok", "shape", "answer", "odd", "clip quirk"], _process,
                    source=lambda c: f"/frames/{c}.safetensors", progress=False)
    assert run.stage == "captions" and run.shard == "shard-003"
    assert run.results == {"ok": 2}
    assert run.failures == [
        {"clip_id": "shape", "stage": "captions", "source": "/frames/shape.safetensors",
         "error_type": "bad_input", "message": "clip shape: expected [T, H, W, 3]"},
        {"clip_id": "answer", "stage": "captions", "source": "/backend/answers",
         "error_type": "empty_answer", "message": "clip answer: nothing said"},
        {"clip_id": "odd", "stage": "captions", "source": "/frames/odd.safetensors",
         "error_type": "unexpected", "message": "clip odd: Odd: broken"},
        {"clip_id": "clip quirk", "stage": "captions", "source": "/frames/clip quirk.safetensors",
         "error_type": "unexpected", "message": "clip clip quirk: KeyError: 'k'"},
    ]
    assert all(list(row) == list(FAILURE_COLUMNS) for row in run.failures)
    fixed = run_clips("decode", "s", ["shape"], _process, source="/videos/index.csv", progress=False)
    assert fixed.failures[0]["source"] == "/videos/index.csv"
    # clip ids and sources are stored as text whatever their type
    row = failure_row(7, "decode", Path("/d/7.mp4"), ErrorType.CORRUPT, "bad")
    assert row == {"clip_id": "7", "stage": "decode", "source": "/d/7.mp4", "error_type": "corrupt",
                   "message": "clip 7: bad"}
    assert failure_row("a", "s", "x", "no_face", "clip a: none")["message"] == "clip a: none"
    assert failure_row("a", "s", "x", "no_face", "clip ab: none")["message"] == "clip a: clip ab: none"


def test_failure_rows_of_batches_and_of_inputs_that_cannot_be_prepared() -> None:
    """A clip whose input cannot be read fails alone with the stage's source (or its
    ClipFailure's); a batch all of whose clips failed preparation is never sent."""
    sent: list[list[str]] = []

    def prepare(clip_id: str) -> str:
        if clip_id.startswith("gone"):
            raise FileNotFoundError(f"/frames/{clip_id}: missing")
        if clip_id == "lost":
            raise ClipFailure("missing_frames", "not in the shard", source="/frames/shard-000.safetensors")
        return clip_id.upper()

    def batch(inputs: list[str]) -> list[object]:
        sent.append(inputs)
        return [TimeoutError("no reply in 30 s") if x == "SLOW" else len(x) for x in inputs]

    run = run_batches("captions", "shard-000", ["gone1", "gone2", "a", "lost", "slow", "bb"], batch,
                      batch_size=2, source=lambda c: f"/index#{c}", prepare=prepare, progress=False)
    assert sent == [["A"], ["SLOW", "BB"]]
    assert run.results == {"a": 1, "bb": 2}
    assert run.failures == [
        {"clip_id": "gone1", "stage": "captions", "source": "/index#gone1", "error_type": "missing_file",
         "message": "clip gone1: /frames/gone1: missing"},
        {"clip_id": "gone2", "stage": "captions", "source": "/index#gone2", "error_type": "missing_file",
         "message": "clip gone2: /frames/gone2: missing"},
        {"clip_id": "lost", "stage": "captions", "source": "/frames/shard-000.safetensors",
         "error_type": "missing_frames", "message": "clip lost: not in the shard"},
        {"clip_id": "slow", "stage": "captions", "source": "/index#slow", "error_type": "timeout",
         "message": "clip slow: no reply in 30 s"},
    ]
    assert run.failure_counts() == {"missing_file": 2, "missing_frames": 1, "timeout": 1}
    # a stage's own map comes first, for batches too
    known = run_batches("captions", "s", ["slow"], batch, batch_size=4, source="x", prepare=prepare,
                        known=((TimeoutError, ErrorType.BACKEND_ERROR),), progress=False)
    assert known.failures[0]["error_type"] == "backend_error"
    with pytest.raises(RuntimeError, match=r"captions s: 0 result\(s\) for a batch of 2 clip\(s\)"):
        run_batches("captions", "s", ["a", "b"], lambda x: [], batch_size=2, source="x", progress=False)
    with pytest.raises(RuntimeError, match=r"captions s: 3 result\(s\) for a batch of 1 clip\(s\)"):
        run_batches("captions", "s", ["a"], lambda x: [1, 2, 3], batch_size=0, source="x", progress=False)


def test_classify_uses_only_error_types_of_the_vocabulary() -> None:
    assert classify(Odd("x")) == (ErrorType.UNEXPECTED, "Odd: x")  # a string outside it
    assert classify(Coded("x")) == (ErrorType.UNEXPECTED, "Coded: x")  # not a string
    assert classify(Odd("x"), known=((Odd, ErrorType.CORRUPT),)) == (ErrorType.CORRUPT, "x")
    assert classify(ClipFailure("timeout", "t"), known=((ClipFailure, ErrorType.CORRUPT),))[0] is ErrorType.TIMEOUT
    assert classify(TimeoutError("t"), known=((OSError, ErrorType.UNREADABLE),))[0] is ErrorType.UNREADABLE
    assert classify(ConnectionError("c")) == (ErrorType.CONNECTION_ERROR, "c")


def test_counts_and_log_lines(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """One warning per failure (``<message> (<error_type>)``), one info line with the counts;
    the traceback only for failures nobody classified."""
    with caplog.at_level(logging.INFO, logger="dfer.core.shard_runner"):
        run = run_clips("parsing", "shard-001", ["ok", "shape", "odd", "shape2"],
                        lambda c: _process("shape" if c == "shape2" else c), source="s", progress=False,
                        known=((Odd, ErrorType.NO_FACE),))
        assert [f["error_type"] for f in run.failures] == ["bad_input", "no_face", "bad_input"]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # all classified
        caplog.clear()
        run_clips("parsing", "shard-001", ["odd"], _process, source="s", progress=False)
        (record,) = caplog.records
        assert record.levelno == logging.ERROR and record.exc_info is not None
        assert record.getMessage() == "clip odd: unexpected error in parsing"
        caplog.clear()
        finish_shard(run, [failures_output(run, tmp_path / "f.parquet", {"stage": "parsing"})])
    assert run.failure_counts() == {"bad_input": 2, "no_face": 1}
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "clip shape: expected [T, H, W, 3] (bad_input)"),
        (logging.WARNING, "clip odd: broken (no_face)"),
        (logging.WARNING, "clip shape2: expected [T, H, W, 3] (bad_input)"),
        (logging.INFO, "parsing shard-001: 1 clip(s) done, 3 failed"),
    ]


def test_progress_bars_are_on_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    run_batches("captions", "shard-009", ["a", "b", "c"], lambda x: [1] * len(x), batch_size=2, source="s")
    err = capsys.readouterr().err
    assert "captions shard-009" in err and "3/3" in err and "clip/s" in err  # counted in clips
    run_clips("landmarks", "shard-002", ["a"], len, source="s", progress=False)
    run_batches("captions", "shard-009", ["a"], lambda x: [1], batch_size=2, source="s", progress=False)
    assert capsys.readouterr().err == ""


def test_outputs_keep_their_schemas(tmp_path: Path) -> None:
    """The failures table is written with the string schema even when empty or inferred types
    would differ; a table output with the schema it names."""
    run: ShardRun[int] = ShardRun("decode", "shard-000")
    run.fail("c1", "/v/c1.mp4", "corrupt", "bad moov")
    for rows, name in ((run, "one"), (ShardRun("decode", "shard-000"), "none")):
        path = failures_output(rows, tmp_path / f"{name}.failures.parquet", {"stage": "decode"}).write()
        assert pq.read_schema(path).remove_metadata() == FAILURES_SCHEMA
    table = pq.read_table(tmp_path / "one.failures.parquet").to_pylist()
    assert table == [{"clip_id": "c1", "stage": "decode", "source": "/v/c1.mp4", "error_type": "corrupt",
                      "message": "clip c1: bad moov"}]
    assert run.failures_table().dtypes.tolist() == ["string"] * 5
    schema = pa.schema([("clip_id", pa.string()), ("n", pa.int16())])
    path = Output(tmp_path / "t.parquet", pd.DataFrame({"clip_id": ["a"], "n": [3]}), {"stage": "x"}, schema).write()
    assert pq.read_schema(path).remove_metadata() == schema
    tensors = Output(tmp_path / "t.safetensors", {"a": np.arange(3, dtype=np.int16)}, {"stage": "x"}).write()
    with open_frames(tensors) as shard:
        assert "a" in shard and "b" not in shard
        assert shard.get("a").tolist() == [0, 1, 2] and shard.path == str(tensors)
        with pytest.raises(ClipFailure, match="in the index but not in the frames shard"):
            shard.get("b")


def test_stale_temps_names_and_races(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """Temp files ``.{name}.*.tmp`` of exactly this output (glob characters in the name taken
    literally) are removed; one that vanished meanwhile (another cleaner) is no error."""
    out = tmp_path / "shard-[0]*.parquet"
    mine = [tmp_path / ".shard-[0]*.parquet.a1.tmp", tmp_path / ".shard-[0]*.parquet.b2.tmp"]
    other = [tmp_path / ".shard-0x.parquet.a1.tmp", tmp_path / ".shard-[0]*.parquet.a1.tmp.keep"]
    for p in mine + other:
        p.write_bytes(b"x")
    real_unlink = Path.unlink

    def racing_unlink(self: Path, missing_ok: bool = False) -> None:
        real_unlink(self, missing_ok)
        if self == mine[0]:
            raise FileNotFoundError(self)  # as if another job removed it first

    monkeypatch.setattr(Path, "unlink", racing_unlink)
    with caplog.at_level(logging.WARNING, logger="dfer.core.shard_runner"):
        assert remove_stale_temps(out) == sorted(mine)
    assert not any(p.exists() for p in mine) and all(p.exists() for p in other)
    assert [r.getMessage() for r in caplog.records] == [
        f"removed 2 temp file(s) of an interrupted run next to {out}"]
    caplog.clear()
    assert remove_stale_temps(out) == [] and not caplog.records


def test_index_clip_ids_and_shard_labels(tmp_path: Path) -> None:
    index = write_parquet(tmp_path / "shard-001.parquet", pd.DataFrame({"n": [1, 2, 3], "clip_id": ["b", "a", "7"]}),
                          {"stage": "decode"})
    assert index_clip_ids(index) == ["b", "a", "7"]  # index order, as text
    assert shard_label(tmp_path / "shard-001.failures.parquet") == "shard-001"
    assert shard_label("results/ds/frames/shard-0002.safetensors") == "shard-0002"
