"""Pinned face backends never fall back; ``auto`` says what it chose; training refuses mixtures.

A pinned GPU backend whose weights are missing must stop the shard job before its first clip
(an error naming the config key and the file), never turn into dlib / polygon artifacts that
claim to be something else. ``auto`` may substitute the CPU backend, but logs the choice and
records it in the provenance and in train.json. Shards of one dataset made with different
backends, models or params are refused by the training data loader.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from support.dataset import simple_renderers, write_synthetic_dataset

from dfer.cli import main as cli_main
from dfer.core import weights
from dfer.core.artifacts import read_meta, write_parquet, write_safetensors
from dfer.core.paths import shard_file
from dfer.core.weights import MissingWeightsError
from dfer.landmarks import shard as landmarks_shard
from dfer.landmarks.api import choose_backend as choose_landmarks
from dfer.landmarks.config import LandmarksConfig
from dfer.parsing import shard as parsing_shard
from dfer.parsing.api import choose_backend as choose_parser
from dfer.parsing.config import ParsingConfig
from dfer.train.data import Needs, dataset_shards, load_clip_table
from dfer.train.fit import train_fold
from dfer.train.provenance import MixedProvenanceError

SIZE = 32


@pytest.fixture(autouse=True)
def no_gpu_and_no_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The same answer on every machine: no CUDA, an empty torch hub cache, nothing logged yet."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(weights, "_ANNOUNCED", set())


def write_decoded_shard(folder: Path, clip_ids: list[str]) -> tuple[Path, Path]:
    """A decode shard (frames safetensors + index) holding ``clip_ids`` of 2 grey frames."""
    frames = folder / "frames" / "shard-000.safetensors"
    index = folder / "frames" / "shard-000.parquet"
    write_safetensors(frames, {c: np.full((2, SIZE, SIZE, 3), 90, np.uint8) for c in clip_ids},
                      {"stage": "decode"})
    write_parquet(index, pd.DataFrame({"clip_id": clip_ids, "label": ["happiness"] * len(clip_ids)}), {})
    return frames, index


class ClipSpy:
    """Stands in for the per-clip function of a shard runner and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> None:
        self.calls += 1
        raise AssertionError("a clip was processed although the weights are missing")


# -- a pinned backend with missing weights stops the job at its start ---------------------------


@pytest.mark.parametrize("clip_ids", [["a", "b"], []], ids=["two-clips", "empty-shard"])
def test_pinned_fan_without_weights_fails_before_any_clip(tmp_path, monkeypatch, clip_ids) -> None:
    spy = ClipSpy()
    monkeypatch.setattr(landmarks_shard, "detect_landmarks", spy)
    frames, index = write_decoded_shard(tmp_path, clip_ids)
    missing = tmp_path / "weights" / "2DFAN4.pth.tar"
    out, fail = tmp_path / "lm" / "shard-000.parquet", tmp_path / "lm" / "shard-000.failures.parquet"
    params = {"backend": "face_alignment", "weights": str(missing), "device": "cpu"}
    with pytest.raises(MissingWeightsError) as err:
        cli_main(["landmarks", "--frames", str(frames), "--index", str(index), "--out", str(out),
                  "--out-failures", str(fail), "--params", json.dumps(params)])
    assert "landmarks.weights" in str(err.value) and str(missing) in str(err.value)
    assert err.value.config_key == "landmarks.weights" and err.value.path == missing
    assert spy.calls == 0
    assert not out.exists() and not fail.exists()  # no artifact claims to be FAN, nor dlib


@pytest.mark.parametrize("clip_ids", [["a"], []], ids=["one-clip", "empty-shard"])
def test_pinned_facer_without_weights_fails_before_any_clip(tmp_path, monkeypatch, clip_ids) -> None:
    spy = ClipSpy()
    monkeypatch.setattr(parsing_shard, "parse_clip", spy)
    frames, index = write_decoded_shard(tmp_path, clip_ids)
    lm = tmp_path / "landmarks" / "shard-000.parquet"
    landmarks_shard.run_shard(frames, index, lm, tmp_path / "landmarks" / "f.parquet",
                              {"backend": "dlib", "detector": "crop"})
    outs = [tmp_path / "p" / n for n in ("shard-000.safetensors", "shard-000.parquet", "f.parquet")]
    with pytest.raises(MissingWeightsError, match=r"parsing\.weights") as err:
        parsing_shard.run_shard(frames, index, lm, *outs, {"backend": "facer", "device": "cpu"})
    # no configured path: the file was looked for in the torch hub cache, and the error says where
    assert err.value.path == tmp_path / "torch-home" / "hub" / "checkpoints" / err.value.path.name
    assert str(err.value.path) in str(err.value)
    assert spy.calls == 0 and not any(p.exists() for p in outs)


def test_pinned_backends_never_fall_back(tmp_path, monkeypatch) -> None:
    """Even where `auto` would pick the GPU backend's substitute, a pinned one raises instead."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(MissingWeightsError, match="landmarks.weights"):
        choose_landmarks(LandmarksConfig(backend="face_alignment", weights=str(tmp_path / "x")))
    with pytest.raises(MissingWeightsError, match="parsing.weights"):
        choose_parser(ParsingConfig(backend="facer", weights=str(tmp_path / "x")))
    auto = choose_landmarks(LandmarksConfig(weights=str(tmp_path / "x")))
    assert (auto.backend, auto.substitute) == ("dlib", True)
    assert "CUDA is visible but not the FAN weights" in auto.reason and "landmarks.weights" in auto.reason
    assert choose_landmarks(LandmarksConfig(backend="dlib")).reason == "pinned by landmarks.backend"


# -- auto: logged once per job, recorded in the provenance ------------------------------------


def test_auto_logs_its_choice_and_records_it(tmp_path, caplog) -> None:
    frames, index = write_decoded_shard(tmp_path, [])
    lm, lm_fail = tmp_path / "lm" / "shard-000.parquet", tmp_path / "lm" / "f.parquet"
    outs = [tmp_path / "p" / n for n in ("shard-000.safetensors", "shard-000.parquet", "f.parquet")]
    with caplog.at_level(logging.WARNING, logger="dfer.core.weights"):
        landmarks_shard.run_shard(frames, index, lm, lm_fail, {"backend": "auto"})
        landmarks_shard.run_shard(frames, index, lm, lm_fail, {"backend": "auto"})
        parsing_shard.run_shard(frames, index, lm, *outs, {"backend": "auto"})
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "landmarks.backend auto -> dlib (CPU substitute): no CUDA device is visible, so not face_alignment",
        "parsing.backend auto -> landmarks (CPU substitute): no CUDA device is visible, so not facer",
    ]  # once per process and choice, however often the backend is resolved
    assert read_meta(lm)["backend"] == "dlib"
    assert read_meta(lm)["backend_choice"] == {
        "configured": "auto", "backend": "dlib", "substitute": True,
        "reason": "no CUDA device is visible, so not face_alignment"}
    for path in outs[:2]:
        assert read_meta(path)["backend_choice"]["backend"] == "landmarks"


# -- training refuses shards made by different setups ----------------------------------------


def set_meta(path: Path, **fields: object) -> None:
    """Rewrite the provenance of a Parquet shard with ``fields`` changed."""
    table = pq.read_table(path)
    write_parquet(path, table, {**read_meta(path), **fields})


def landmark_meta(backend: str, detector: str = "hog", configured: str = "auto") -> dict:
    model = "face_alignment:2DFAN-4" if backend == "face_alignment" else "dlib:shape_predictor_68"
    return {
        "backend": backend, "model": model,
        "params": {"backend": configured, "detector": detector, "fill": "nearest"},
        "backend_choice": {"configured": configured, "backend": backend, "substitute": backend == "dlib",
                           "reason": "test"},
    }


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    write_synthetic_dataset(tmp_path, "mix", num_classes=2, clips_per_class=4, frames=4, size=SIZE,
                            num_shards=2)
    return tmp_path


def test_training_refuses_landmarks_from_two_backends(mixed: Path) -> None:
    first, second = dataset_shards(mixed, "mix")
    set_meta(shard_file(mixed, "mix", "landmarks", first, ".parquet"), **landmark_meta("face_alignment"))
    set_meta(shard_file(mixed, "mix", "landmarks", second, ".parquet"), **landmark_meta("dlib"))
    with pytest.raises(MixedProvenanceError) as err:
        load_clip_table(mixed, "mix", Needs(landmarks=True))
    msg = str(err.value)
    assert f"mix: landmarks shards {first} and {second} were made with different backend" in msg
    assert "'face_alignment' != 'dlib'" in msg
    assert f"shard-{first}.parquet" in msg and f"shard-{second}.parquet" in msg
    # parsing maps were drawn from those landmarks: a model reading only parsing is refused too
    with pytest.raises(MixedProvenanceError):
        load_clip_table(mixed, "mix", Needs(parsing=True))
    # a model that reads neither level is not concerned
    assert len(load_clip_table(mixed, "mix", Needs()).clips) == 8


def test_training_refuses_shards_with_different_params(mixed: Path) -> None:
    first, second = dataset_shards(mixed, "mix")
    set_meta(shard_file(mixed, "mix", "landmarks", first, ".parquet"), **landmark_meta("dlib", "hog"))
    set_meta(shard_file(mixed, "mix", "landmarks", second, ".parquet"), **landmark_meta("dlib", "crop"))
    with pytest.raises(MixedProvenanceError, match=r"different params \(detector: 'hog' != 'crop'"):
        load_clip_table(mixed, "mix", Needs(landmarks=True))


def test_training_refuses_captions_from_two_models(mixed: Path) -> None:
    first, second = dataset_shards(mixed, "mix")
    set_meta(shard_file(mixed, "mix", "captions", first, ".parquet"), backend="vllm", model="A")
    set_meta(shard_file(mixed, "mix", "captions", second, ".parquet"), backend="vllm", model="B")
    with pytest.raises(MixedProvenanceError, match=r"captions shards .* different model \(value: 'A' != 'B'"):
        load_clip_table(mixed, "mix", Needs(captions=True))


def test_train_json_records_the_backends_and_autos_reason(mixed: Path) -> None:
    for shard in dataset_shards(mixed, "mix"):
        set_meta(shard_file(mixed, "mix", "landmarks", shard, ".parquet"), **landmark_meta("dlib"))
    out = mixed / "mix" / "train" / "t" / "fold-1"
    params = {
        "device": "cpu",
        "model": {"backbone": "tiny", "pretrained": None, "use_parsing": False, "use_captions": False},
        "data": {"batch_size": 4, "num_workers": 0, "num_frames": 2},
        "trainer": {"max_epochs": 1, "seed": 0, "log_every_n_steps": 1, "precision": "32-true"},
    }
    train_fold(mixed, "mix", 1, "t", params, out, renderers=simple_renderers())
    backends = json.loads((out / "train.json").read_text())["backends"]
    assert set(backends) == {"decode", "landmarks"}
    assert backends["landmarks"] == {
        "backend": "dlib", "model": "dlib:shape_predictor_68",
        "backend_choice": {"configured": "auto", "backend": "dlib", "substitute": True, "reason": "test"},
    }
