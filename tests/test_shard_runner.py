"""The shared shard runner: failure vocabulary, counts, stale temps, empty shards, atomic writes.

Every stage's shard job stands on ``dfer.core.shard_runner``; these tests pin what the stages rely
on without any model or video: one bad clip never sinks the shard, failures are classified
into the one documented vocabulary, and outputs are replaced atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dfer.captions.base import Description
from dfer.core.artifacts import FAILURE_COLUMNS, read_meta, write_safetensors
from dfer.core.shard_runner import (
    ERROR_MEANINGS,
    ClipFailure,
    ErrorType,
    Output,
    classify,
    failure_row,
    failures_output,
    finish_shard,
    open_frames,
    prepare_outputs,
    remove_stale_temps,
    run_batches,
    run_clips,
)
from dfer.video.errors import DecodeError, MissingFile

TABLE = pa.schema([("clip_id", pa.string()), ("value", pa.int64())])


class Quirk(Exception):
    """An exception no rule knows."""


def _process(clip_id: str) -> int:
    """A per-clip function whose failures are chosen by the clip id."""
    if clip_id == "bad_shape":
        raise ValueError("expected [T, H, W, 3]")
    if clip_id == "slow":
        raise TimeoutError("no reply")
    if clip_id == "quirk":
        raise Quirk("what now")
    if clip_id == "gone":
        raise MissingFile("/data/gone.mp4: file not found")
    if clip_id == "chosen":
        raise ClipFailure(ErrorType.EMPTY_ANSWER, "nothing said")
    return len(clip_id)


def test_vocabulary_is_documented_and_snake_case() -> None:
    assert set(ERROR_MEANINGS) == set(ErrorType)
    assert all(e.value == e.value.lower() and " " not in e.value for e in ErrorType)
    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    assert all(f"`{e.value}`" in doc for e in ErrorType)  # the "Failure records" section
    for cls in (DecodeError, *DecodeError.__subclasses__(), MissingFile):
        assert cls.error_type in ErrorType.__members__.values(), cls


def test_exceptions_are_classified() -> None:
    assert classify(MissingFile("x: file not found")) == (ErrorType.MISSING_FILE, "x: file not found")
    assert classify(ClipFailure("no_face", "none")) == (ErrorType.NO_FACE, "none")
    assert classify(ValueError("short")) == (ErrorType.BAD_INPUT, "short")
    assert classify(TimeoutError("t"))[0] is ErrorType.TIMEOUT
    assert classify(ConnectionRefusedError("c"))[0] is ErrorType.CONNECTION_ERROR
    assert classify(FileNotFoundError("f"))[0] is ErrorType.MISSING_FILE
    # a KeyError is not taken for a missing tensor: FrameShard says that itself
    assert classify(KeyError("k")) == (ErrorType.UNEXPECTED, "KeyError: 'k'")
    assert classify(Quirk("q"), known=((Quirk, ErrorType.NO_FACE),))[0] is ErrorType.NO_FACE
    # the stage's map comes before the defaults (e.g. a ValueError subclass meaning no face)
    assert classify(ValueError("v"), known=((ValueError, ErrorType.NO_FACE),))[0] is ErrorType.NO_FACE


def test_failure_row_checks_the_vocabulary_and_names_the_clip() -> None:
    row = failure_row("c1", "decode", "/d/c1.mp4", "corrupt", "/d/c1.mp4: bad moov")
    assert list(row) == list(FAILURE_COLUMNS)
    assert row["message"] == "clip c1: /d/c1.mp4: bad moov"
    assert failure_row("c1", "decode", "s", "corrupt", "clip c1: said")["message"] == "clip c1: said"
    with pytest.raises(ValueError):
        failure_row("c1", "decode", "s", "CorruptVideo", "typo")


def test_backend_codes_map_to_the_vocabulary() -> None:
    assert Description("c", error_type="Timeout", message="clip c: slow").error_type == "timeout"
    http = Description("c", error_type="HTTP503", message="clip c: HTTP 503: busy")
    assert (http.error_type, http.message) == ("backend_error", "clip c: HTTP 503: busy")
    engine = Description("c", error_type="RuntimeError", message="clip c: engine died")
    assert (engine.error_type, engine.message) == ("backend_error", "clip c: engine died (RuntimeError)")
    assert Description("c", error_type="BadFrames", message="m").error_type == "bad_input"
    assert Description("c", error_type="empty_answer", message="m").error_type == "empty_answer"
    assert Description("c", text="ok").ok


def test_a_failing_clip_never_sinks_the_shard_and_counts_add_up(caplog) -> None:
    ids = ["a", "bad_shape", "slow", "quirk", "gone", "chosen", "bb"]
    with caplog.at_level(logging.ERROR, logger="dfer.core.shard_runner"):
        run = run_clips("demo", "shard-000", ids, _process, source=lambda c: f"/src/{c}",
                        progress=False)
    assert run.results == {"a": 1, "bb": 2}  # in clip order, only the clips that finished
    types = {f["clip_id"]: f["error_type"] for f in run.failures}
    assert types == {"bad_shape": "bad_input", "slow": "timeout", "quirk": "unexpected",
                     "gone": "missing_file", "chosen": "empty_answer"}
    assert [f["clip_id"] for f in run.failures] == ["bad_shape", "slow", "quirk", "gone", "chosen"]
    quirk = next(f for f in run.failures if f["clip_id"] == "quirk")
    assert quirk == {"clip_id": "quirk", "stage": "demo", "source": "/src/quirk",
                     "error_type": "unexpected", "message": "clip quirk: Quirk: what now"}
    assert run.failure_counts() == {"bad_input": 1, "empty_answer": 1, "missing_file": 1,
                                    "timeout": 1, "unexpected": 1}
    assert "clip quirk: unexpected error in demo" in caplog.text  # a bug keeps its traceback


def test_progress_bar_names_stage_and_shard(capsys) -> None:
    run_clips("landmarks", "shard-007", ["a", "b", "c"], len, source="s")
    err = capsys.readouterr().err
    assert "landmarks shard-007" in err and "3/3" in err


def test_batches_pair_results_with_their_clips() -> None:
    seen: list[list[str]] = []

    def batch(clips: list[str]) -> list[int | BaseException]:
        seen.append(clips)
        return [ClipFailure("empty_answer", "blank", source="/answers") if c == "x" else len(c)
                for c in clips]

    run = run_batches("captions", "shard-000", ["a", "x", "ccc", "dd", "e"], batch,
                      batch_size=2, source="/index", progress=False)
    assert seen == [["a", "x"], ["ccc", "dd"], ["e"]]
    assert run.results == {"a": 1, "ccc": 3, "dd": 2, "e": 1}
    assert run.failures == [{"clip_id": "x", "stage": "captions", "source": "/answers",
                             "error_type": "empty_answer", "message": "clip x: blank"}]
    with pytest.raises(RuntimeError, match="1 result"):  # never pair answers with wrong clips
        run_batches("captions", "s", ["a", "b"], lambda c: [1], batch_size=2, source="s",
                    progress=False)


def test_prepared_inputs_reach_the_batch_and_a_clip_that_cannot_be_read_fails_alone() -> None:
    seen: list[list[str]] = []

    def prepare(clip_id: str) -> str:
        if clip_id == "lost":
            raise ClipFailure("missing_frames", "not in the shard", source="/frames")
        return clip_id.upper()

    def batch(inputs: list[str]) -> list[int]:
        seen.append(inputs)
        return [len(x) for x in inputs]

    run = run_batches("captions", "shard-000", ["a", "lost", "bb", "lost2", "ccc"], batch,
                      batch_size=2, source="/index", progress=False,
                      prepare=lambda c: prepare("lost" if c == "lost2" else c))
    assert seen == [["A"], ["BB"], ["CCC"]]  # a batch left empty by failures is not sent
    assert run.results == {"a": 1, "bb": 2, "ccc": 3}
    assert [(f["clip_id"], f["source"], f["error_type"]) for f in run.failures] == [
        ("lost", "/frames", "missing_frames"), ("lost2", "/frames", "missing_frames")]
    assert list(run.results) == ["a", "bb", "ccc"]  # clip order kept


def test_missing_tensor_is_missing_frames(tmp_path: Path) -> None:
    frames = write_safetensors(tmp_path / "f.safetensors", {"a": np.zeros((2, 4, 4, 3), np.uint8)},
                               {"stage": "decode"})
    with open_frames(frames) as shard:
        run = run_clips("parsing", "f", ["a", "lost"], lambda c: shard.get(c).shape,
                        source=str(frames), progress=False)
    assert run.results == {"a": (2, 4, 4, 3)}
    assert run.failures[0]["error_type"] == "missing_frames"
    assert run.failures[0]["message"] == f"clip lost: in the index but not in the frames shard {frames}"


def _outputs(run, folder: Path) -> list[Output]:
    table = pa.table({"clip_id": list(run.results), "value": list(run.results.values())}, schema=TABLE)
    meta = {"stage": "demo", "clips": len(run.results)}
    return [Output(folder / "s.safetensors",
                   {c: np.full(2, v, np.int64) for c, v in run.results.items()}, meta),
            failures_output(run, folder / "s.failures.parquet", meta),
            Output(folder / "s.parquet", table, meta, TABLE)]


def test_empty_shard_writes_valid_empty_artifacts(tmp_path: Path) -> None:
    run = run_clips("demo", "shard-000", [], _process, source="s", progress=False)
    outs = _outputs(run, tmp_path)
    finish_shard(run, outs)
    from safetensors import safe_open

    with safe_open(str(outs[0].path), framework="numpy") as fh:
        assert list(fh.keys()) == []
    failures = pq.read_table(outs[1].path)
    assert failures.num_rows == 0 and failures.column_names == list(FAILURE_COLUMNS)
    assert pq.read_table(outs[2].path).schema.remove_metadata() == TABLE
    assert all(read_meta(o.path)["clips"] == 0 for o in outs)


def test_stale_temps_of_every_output_are_removed(tmp_path: Path) -> None:
    paths = [tmp_path / "s.safetensors", tmp_path / "s.parquet", tmp_path / "s.failures.parquet"]
    stale = [tmp_path / f".{p.name}.abc123.tmp" for p in paths]
    keep = [tmp_path / "other.parquet", tmp_path / ".other.parquet.x.tmp"]
    for p in stale + keep:
        p.write_bytes(b"half")
    prepare_outputs(paths)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)
    assert remove_stale_temps(tmp_path / "absent" / "x.parquet") == []


def test_finish_shard_logs_each_failure_and_the_counts(tmp_path: Path, caplog) -> None:
    run = run_clips("demo", "shard-001", ["a", "gone"], _process, source="s", progress=False)
    with caplog.at_level(logging.INFO, logger="dfer.core.shard_runner"):
        finish_shard(run, _outputs(run, tmp_path))
    assert "clip gone: /data/gone.mp4: file not found (missing_file)" in caplog.text
    assert "demo shard-001: 1 clip(s) done, 1 failed" in caplog.text


def test_a_failed_write_leaves_the_previous_files(tmp_path: Path, monkeypatch) -> None:
    first = run_clips("demo", "s", ["a", "bb"], _process, source="s", progress=False)
    finish_shard(first, _outputs(first, tmp_path))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    import dfer.core.shard_runner as runner

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    second = run_clips("demo", "s", ["ccc"], _process, source="s", progress=False)
    monkeypatch.setattr(pq, "write_table", full_disk)  # the safetensors is replaced, then fail
    with pytest.raises(OSError, match="No space left"):
        runner.finish_shard(second, _outputs(second, tmp_path))
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(after) == set(before)  # no temp file left behind
    assert after["s.parquet"] == before["s.parquet"]
    assert after["s.failures.parquet"] == before["s.failures.parquet"]
