"""Captions shard runner and CLI with the offline describer (the pipeline default)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
from captions_data import animate, write_shard

from dfer.captions.base import ClipInput, Description
from dfer.captions.config import OFFLINE_MODEL, CaptionsConfig
from dfer.captions.shard import SCHEMA, run_shard
from dfer.core.artifacts import read_meta, read_parquet


def _run(paths, params=None, describer=None):
    return run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                     paths["failures"], params or {}, describer=describer)


def test_offline_shard_writes_one_row_per_clip(tmp_path):
    clips = {"open": animate("mouth_open"), "still": animate("still"),
             "brows": animate("brow_raise"), "upstream_failed": None}
    paths = write_shard(tmp_path, clips)
    summary = _run(paths)
    table = pq.read_table(paths["out"])
    assert table.schema.remove_metadata() == SCHEMA
    df = table.to_pandas()
    assert list(df["clip_id"]) == ["open", "still", "brows"]  # index order, failed one skipped
    by_id = dict(zip(df["clip_id"], df["caption"], strict=True))
    assert "mouth markedly opens" in by_id["open"]
    assert by_id["still"].startswith("The face stays still.")
    assert "eyebrows raise and then lower again" in by_id["brows"]
    assert (df["caption"] == df["raw_text"]).all()  # offline text is emotion-free already
    assert set(df["backend"]) == {"offline"} and set(df["model"]) == {OFFLINE_MODEL}
    assert set(df["prompt_version"]) == {"v1"}
    assert (df["num_tokens"] > 3).all() and (df["seconds"] >= 0).all()
    assert summary == {"clips": 3, "failed_clips": 0, "skipped_upstream": 1,
                       "tokens": int(df["num_tokens"].sum()), "failure_types": {},
                       "captions_cut_at_77": 0}
    meta = read_meta(paths["out"])
    assert meta["stage"] == "captions" and meta["backend"] == "offline"
    assert meta["prompt_hash"] == CaptionsConfig.from_params({}).prompt_hash()
    assert meta["params"]["batch_size"] == 16
    assert len(read_parquet(paths["failures"])) == 0  # upstream failures are not re-reported


def test_reruns_are_byte_identical_except_timing(tmp_path):
    paths = write_shard(tmp_path, {"a": animate("blink"), "b": animate("mouth_open")})
    _run(paths)
    first = read_parquet(paths["out"]).drop(columns="seconds")
    meta = read_meta(paths["out"])
    _run(paths)
    assert read_parquet(paths["out"]).drop(columns="seconds").equals(first)
    assert read_meta(paths["out"]) == meta


def test_clip_without_faces_is_a_failure_row(tmp_path):
    pts = animate("mouth_open")
    no_face = np.zeros(len(pts), bool)
    no_face[3] = True  # a single detected frame: no movement to describe
    paths = write_shard(tmp_path, {"ok": animate("blink"), "noface": pts},
                        has_face={"noface": no_face})
    summary = _run(paths)
    assert summary["clips"] == 1 and summary["failure_types"] == {"no_face": 1}
    fails = read_parquet(paths["failures"])
    assert list(fails["clip_id"]) == ["noface"]
    assert "only 1 frame(s) with a detected face" in fails["message"].iloc[0]


class EmotionOnly:
    """A backend that answers with an emotion judgement for one clip, evidence for others."""

    name = "fake"
    model = "fake-model"
    needs_frames = True
    needs_landmarks = False

    def __init__(self):
        self.batches = []

    def describe(self, clips, prompt):
        self.batches.append([c.clip_id for c in clips])
        return [Description(c.clip_id, text="The person looks happy and excited." if c.clip_id == "x"
                            else "The lips press together and the chin rises.", num_tokens=9)
                for c in clips]

    def close(self):
        pass


def test_injected_backend_batches_and_refinement_failures(tmp_path):
    ids = ["a", "x", "b", "c", "d"]
    paths = write_shard(tmp_path, {i: None for i in ids}, frames_missing=("d",))
    backend = EmotionOnly()
    summary = _run(paths, {"batch_size": 2}, describer=backend)
    # batches of 2 over the index; the clip without frames never reaches the backend
    assert backend.batches == [["a", "x"], ["b", "c"]]
    assert summary["failure_types"] == {"empty_after_refinement": 1, "missing_frames": 1}
    df = read_parquet(paths["out"])
    assert list(df["clip_id"]) == ["a", "b", "c"]
    assert set(df["backend"]) == {"fake"}
    fails = read_parquet(paths["failures"]).set_index("clip_id")
    assert fails.loc["x", "error_type"] == "empty_after_refinement"
    assert "looks happy" in fails.loc["x", "message"]
    assert fails.loc["d", "error_type"] == "missing_frames"


def test_empty_shard_writes_valid_empty_artifacts(tmp_path):
    paths = write_shard(tmp_path, {})
    summary = _run(paths, {"backend": "vllm"})  # no engine is started for zero clips
    assert summary["clips"] == 0
    assert pq.read_table(paths["out"]).num_rows == 0
    assert read_meta(paths["out"])["backend"] == "vllm"
    assert pq.read_table(paths["failures"]).num_rows == 0


def test_cli_runs_the_stage(tmp_path, repo_root):
    paths = write_shard(tmp_path, {"a": animate("mouth_open"), "b": animate("still")})
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "dfer", "captions", "--frames", str(paths["frames"]),
         "--index", str(paths["index"]), "--landmarks", str(paths["landmarks"]),
         "--out", str(paths["out"]), "--out-failures", str(paths["failures"]),
         "--params", json.dumps({"backend": "offline", "prompt_version": "v1"})],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert '"clips": 2' in proc.stderr
    assert list(read_parquet(paths["out"])["clip_id"]) == ["a", "b"]


class _Out:
    def __init__(self, text):
        self.outputs = [type("C", (), {"text": text, "token_ids": list(range(len(text))),
                                       "finish_reason": "stop"})()]


class _FakeLLM:
    """Stands in for vllm.LLM: rejects any batch holding the prompt marked 'bad'."""

    def __init__(self):
        self.calls = []

    def generate(self, requests, sampling_params, use_tqdm=False):
        self.calls.append(len(requests))
        if any(r["prompt"] == "bad" for r in requests):
            raise ValueError("prompt too long")
        return [_Out("" if r["multi_modal_data"]["video"][0][0, 0, 0, 0] == 7 else "lips part")
                for r in requests]


def test_vllm_describer_isolates_a_failing_clip_without_vllm():
    from dfer.captions.vllm_backend import VLLMDescriber, video_metadata

    d = VLLMDescriber.__new__(VLLMDescriber)  # the engine-free parts: request + describe
    d.model, d.input_mode, d.num_frames = "m", "video", 4
    d.sampling_params, d.llm = None, _FakeLLM()
    d.chat_prompt = lambda prompt: prompt
    good = np.zeros((6, 8, 8, 3), np.uint8)
    empty = np.full((6, 8, 8, 3), 7, np.uint8)
    clips = [ClipInput("a", frames=good), ClipInput("e", frames=empty), ClipInput("x"),
             ClipInput("b", frames=good)]
    req = d.request(clips[0], "q")
    frames, meta = req["multi_modal_data"]["video"]
    assert frames.shape == (4, 8, 8, 3) and meta == video_metadata(4)
    assert meta["do_sample_frames"] is False and meta["frames_indices"] == [0, 1, 2, 3]
    out = d.describe(clips, "q")
    assert [o.clip_id for o in out] == ["a", "e", "x", "b"]
    assert out[0].text == "lips part" and out[0].num_tokens == 9
    assert out[1].error_type == "empty_answer"
    assert out[2].error_type == "bad_input"
    assert d.llm.calls == [3]  # one batched call for the three clips with frames
    # a batch the engine rejects is retried clip by clip: only the bad request fails
    d.llm.calls.clear()
    real_request = d.request
    d.request = lambda clip, p: {**real_request(clip, p), "prompt": "bad" if clip.clip_id == "b" else p}
    out = d.describe([clips[0], clips[3]], "q")
    assert d.llm.calls == [2, 1, 1]
    assert out[0].ok and out[1].error_type == "backend_error" and "ValueError" in out[1].message and "prompt too long" in out[1].message


class Wordy(EmotionOnly):
    """Answers clip ``long`` with 75 words CLIP tokenizes one token each and a full stop (78
    positions with the start and end tokens: the text encoder's 77 cut it), ``edge`` with 74
    (77 positions: it fits exactly)."""

    def describe(self, clips, prompt):
        words = {"long": 75, "edge": 74}
        return [Description(c.clip_id, text=" ".join(["eye"] * words.get(c.clip_id, 3)) + ".",
                            num_tokens=9) for c in clips]


def test_captions_cut_at_77_clip_tokens_are_counted_per_shard(tmp_path):
    from dfer.captions.clip_tokens import clip_token_count

    assert clip_token_count("eye eye eye") == 5  # one token a word, plus start and end
    paths = write_shard(tmp_path, {i: None for i in ("long", "edge", "short")})
    summary = _run(paths, describer=Wordy())
    assert clip_token_count(" ".join(["eye"] * 75) + ".") == 78  # cut
    assert clip_token_count(" ".join(["eye"] * 74) + ".") == 77  # fits
    assert summary["captions_cut_at_77"] == 1
    assert read_meta(paths["out"])["captions_cut_at_77"] == 1
