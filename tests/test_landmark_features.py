"""Landmark-feature stage: FAN heat-map pooling by hand, MobileFaceNet conv_4 against an
independent functional forward of a checkpoint in S2D's released layout, strict loading, the
shard contract (tensors, index, failures, provenance) and the reader's refusal of another kind."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from torch.nn import functional as F

from dfer.core.artifacts import read_meta, write_parquet, write_safetensors
from dfer.core.shard_runner import ClipFailure
from dfer.landmark_features import (
    SCHEMA,
    LandmarkFeaturesConfig,
    WrongFeatureKindError,
    extract_features,
    open_landmark_features,
    read_landmark_features,
    run_shard,
)
from dfer.landmark_features.api import fan_heatmap_features
from dfer.landmark_features.heatmap_pool import overlap_weights, pool_to_frame_grid
from dfer.landmark_features.shard import stored

# --------------------------------------------------------------------------- FAN heat maps


def test_overlap_weights_and_pooling_of_a_known_heatmap_by_hand() -> None:
    """Heat-map cells of 3 px starting at 0.5 px (cell k: [0.5 + 3k, 3.5 + 3k)) onto an 8 px
    frame cut into 2 cells of 4 px: cell 1 ([3.5, 6.5)) gives 0.5 / 4 to output 0 and 2.5 / 4
    to output 1; cell 3 ([9.5, 12.5)) lies outside the frame."""
    w = overlap_weights(0.5, 3.0, 4, 8.0, 2)
    np.testing.assert_allclose(w, [[0.75, 0.125, 0, 0], [0, 0.625, 0.375, 0]])
    heat = np.zeros((1, 2, 4, 4), np.float32)
    heat[0, 0, 1, 1] = 1.0  # y, x both [3.5, 6.5)
    heat[0, 0, 0, 3] = 2.0  # x outside the frame: contributes nothing
    heat[0, 0, 2, 0] = 4.0  # y [6.5, 9.5) -> 1.5 / 4 in row 1; x [0.5, 3.5) -> 3 / 4 in column 0
    heat[0, 1] = 1.0        # uniform: every output cell fully covered except the missing 0.5 px
    # crop geometry with side 200 * scale = 12 px (4 cells of 3 px) and corner 0.5: centre 6.5
    pooled = pool_to_frame_grid(heat, np.array([[6.5, 6.5]]), np.array([0.06]), frame_size=8, grid=2)
    assert pooled.shape == (1, 2, 2, 2) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled[0, 0], [[0.125 * 0.125, 0.125 * 0.625],
                                              [0.625 * 0.125 + 4 * 0.375 * 0.75, 0.625 * 0.625]], rtol=1e-6)
    # row / column 0 of the frame starts 0.5 px before the heat map does: 3.5 / 4 covered
    np.testing.assert_allclose(pooled[0, 1], [[0.875 * 0.875, 0.875], [0.875, 1.0]], rtol=1e-6)


class HotCell(torch.nn.Module):
    """A stand-in FAN: every crop gets the same heat maps, 1 at cell (x=32, y=32) for all 68
    landmarks, 0 elsewhere (any input)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.calls.append(int(x.shape[0]))
        heat = torch.zeros(x.shape[0], 68, 64, 64)
        heat[:, :, 32, 32] = 1.0
        return [heat]


def test_fan_maps_land_on_the_frame_grid_where_the_crop_geometry_puts_them() -> None:
    """224 px frames, decode margin 0.25: face box [37.33, 186.67], FAN centre (112, 112 - 0.12 x
    149.33), side 200 x 298.67 / 195 px, heat cells of side / 64. Cell (32, 32) spans x [112,
    116.79) -> grid column 7 (16 px cells), y [94.08, 98.87) -> rows 5 and 6."""
    h = 224 - 2 * 224 * 0.25 / 1.5
    side = 200 * (2 * h) / 195
    cell = side / 64
    cy = 112 - 0.12 * h
    y0 = cy - side / 2 + 32 * cell
    net = HotCell()
    frames = np.zeros((3, 224, 224, 3), np.uint8)
    maps = fan_heatmap_features(net, frames, "cpu", batch_size=2, crop_margin=0.25, flip_input=False)
    assert net.calls == [2, 1] and maps.shape == (3, 68, 14, 14)
    expected = np.zeros((14, 14))
    expected[5, 7] = (96 - y0) * cell / 256
    expected[6, 7] = (y0 + cell - 96) * cell / 256
    for t in range(3):
        for k in (0, 30, 67):
            np.testing.assert_allclose(maps[t, k], expected, atol=1e-6)
    # flip averaging: the mirrored map has its cell at x = 63 - 32 = 31, [107.2, 112) -> column 6
    flipped = fan_heatmap_features(HotCell(), frames[:1], "cpu", flip_input=True)
    np.testing.assert_allclose(flipped[0, 0, :, 7], expected[:, 7] / 2, atol=1e-6)
    np.testing.assert_allclose(flipped[0, 0, :, 6], expected[:, 7] / 2, atol=1e-6)


def _save_random_fan(folder):
    from face_alignment.models import FAN

    from dfer.landmarks.fan_backend import weights_filename

    torch.manual_seed(0)
    path = folder / weights_filename()
    torch.save(FAN(1).state_dict(), path)
    return path


def test_fan_heatmaps_backend_loads_fans_checkpoint_from_the_config(tmp_path) -> None:
    ckpt = _save_random_fan(tmp_path)
    frames = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    cfg = {"backend": "fan_heatmaps", "weights": str(tmp_path), "device": "cpu"}
    maps = extract_features(frames, cfg)
    assert maps.shape == (1, 68, 14, 14) and maps.dtype == np.float32 and np.isfinite(maps).all()
    assert float(np.abs(maps).max()) > 0
    from dfer.landmark_features.api import fan_weights_path

    # a folder holding face-alignment's file name, or the file itself (one forward pass each
    # costs seconds on a busy CPU: the shard test below runs the file path)
    assert fan_weights_path(LandmarkFeaturesConfig.from_dict({**cfg, "weights": str(ckpt)})) == str(ckpt)
    with pytest.raises(FileNotFoundError, match=r"no-such.*landmark_features\.weights"):
        extract_features(frames, {**cfg, "weights": str(tmp_path / "no-such")})


# --------------------------------------------------------------------------- MobileFaceNet

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _unit_keys(prefix: str, cin: int, cout: int, k: int, groups: int, act: bool) -> dict[str, tuple]:
    keys = {f"{prefix}.conv.weight": (cout, cin // groups, k, k)}
    keys.update({f"{prefix}.bn.{n}": (() if n == "num_batches_tracked" else (cout,)) for n in BN})
    if act:
        keys[f"{prefix}.prelu.weight"] = (cout,)
    return keys


def _bottleneck_keys(prefix: str, cin: int, cout: int, hidden: int) -> dict[str, tuple]:
    return {**_unit_keys(f"{prefix}.conv", cin, hidden, 1, 1, True),
            **_unit_keys(f"{prefix}.conv_dw", hidden, hidden, 3, hidden, True),
            **_unit_keys(f"{prefix}.project", hidden, cout, 1, 1, False)}


def public_layout() -> dict[str, tuple]:
    """Every tensor of S2D's released MobileFaceNet([112, 112], 136) checkpoint and its shape,
    written from the public architecture (``landmark/mobilefacenet.py``), head included."""
    keys = {**_unit_keys("conv1", 3, 64, 3, 1, True), **_unit_keys("conv2_dw", 64, 64, 3, 64, True),
            **_bottleneck_keys("conv_23", 64, 64, 128)}
    for i in range(4):
        keys.update(_bottleneck_keys(f"conv_3.model.{i}", 64, 64, 128))
    keys.update(_bottleneck_keys("conv_34", 64, 128, 256))
    for i in range(6):
        keys.update(_bottleneck_keys(f"conv_4.model.{i}", 128, 128, 256))
    keys.update(_bottleneck_keys("conv_45", 128, 128, 512))
    for i in range(2):
        keys.update(_bottleneck_keys(f"conv_5.model.{i}", 128, 128, 256))
    keys.update(_unit_keys("conv_6_sep", 128, 512, 1, 1, True))
    keys.update(_unit_keys("output_layer.conv_6_dw", 512, 512, 7, 512, False))
    keys["output_layer.linear.weight"] = (136, 512)
    keys.update({f"output_layer.bn.{n}": (() if n == "num_batches_tracked" else (136,)) for n in BN})
    return keys


def public_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the public layout, batch-norm statistics included (not the identity)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in public_layout().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith(("running_mean", "bn.bias")):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("bn.weight"):
            state[key] = 0.8 + 0.4 * torch.rand(shape, generator=g)
        elif key.endswith("prelu.weight"):
            state[key] = 0.1 + 0.3 * torch.rand(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:]))
            scale = 0.5 if ".project." in key else 1.0
            state[key] = scale * torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return state


def reference_conv4(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """MobileFaceNet up to conv_4 as plain functional calls on the public state dict (an
    implementation independent of ``dfer.landmark_features.mobilefacenet``)."""

    def unit(x, p, stride=1, act=True):
        w = state[f"{p}.conv.weight"]
        groups = x.shape[1] // w.shape[1]
        x = F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups)
        x = F.batch_norm(x, state[f"{p}.bn.running_mean"], state[f"{p}.bn.running_var"],
                         state[f"{p}.bn.weight"], state[f"{p}.bn.bias"], False, 0.0, 1e-5)
        return F.prelu(x, state[f"{p}.prelu.weight"]) if act else x

    def bottleneck(x, p, stride, residual):
        y = unit(unit(unit(x, f"{p}.conv"), f"{p}.conv_dw", stride), f"{p}.project", act=False)
        return x + y if residual else y

    x = unit(unit(x, "conv1", stride=2), "conv2_dw")
    x = bottleneck(x, "conv_23", 2, False)
    for i in range(4):
        x = bottleneck(x, f"conv_3.model.{i}", 1, True)
    x = bottleneck(x, "conv_34", 2, False)
    for i in range(6):
        x = bottleneck(x, f"conv_4.model.{i}", 1, True)
    return x


def _s2d_input(frames: np.ndarray) -> torch.Tensor:
    """S2D's landmark input: ImageNet-normalised, bilinear to 112 with align_corners=True."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=True)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A checkpoint file shaped like S2D's ``mobilefacenet_model_best.pth.tar``: the whole
    network under ``state_dict``, beside training bookkeeping."""
    path = tmp_path_factory.mktemp("mfn") / "mobilefacenet_model_best.pth.tar"
    state = public_state()
    torch.save({"epoch": 41, "state_dict": state, "best_nme": 0.031}, path)
    return path, state


def test_mobilefacenet_conv4_equals_a_functional_forward_of_the_released_layout(released) -> None:
    path, state = released
    frames = np.random.default_rng(1).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    maps = extract_features(frames, {"weights": str(path), "device": "cpu", "batch_size": 2})
    with torch.no_grad():
        expected = reference_conv4(state, _s2d_input(frames)).numpy()
    assert maps.shape == (2, 128, 14, 14) and maps.dtype == np.float32
    assert 0.05 < float(expected.std()) < 50  # a meaningful scale, not all zero
    np.testing.assert_allclose(maps, expected, atol=1e-4 * float(np.abs(expected).max()), rtol=0)
    plain = extract_features(frames, {"weights": str(path), "device": "cpu", "normalization": "none"})
    with torch.no_grad():
        x = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255, size=(112, 112),
                          mode="bilinear", align_corners=True)
        np.testing.assert_allclose(plain, reference_conv4(state, x).numpy(),
                                   atol=1e-4 * float(np.abs(expected).max()), rtol=0)


def test_mobilefacenet_checkpoint_variants_load(tmp_path, released) -> None:
    """``module.`` prefixes (DataParallel), a bare state dict, safetensors, no
    ``num_batches_tracked`` (old PyTorch): all the same network."""
    from safetensors.torch import save_file

    from dfer.landmark_features.mobilefacenet import load_mobilefacenet

    path, state = released
    reference = load_mobilefacenet(str(path), "cpu").state_dict()
    variants = {
        "dp.pth": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
        "bare.pth": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
    }
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    for name in [*variants, "w.safetensors"]:
        got = load_mobilefacenet(str(tmp_path / name), "cpu").state_dict()
        for key in reference:
            if not key.endswith("num_batches_tracked"):
                assert torch.equal(got[key], reference[key]), (name, key)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.pop("conv_4.model.5.project.bn.running_var"),
     r"missing \['conv_4\.model\.5\.project\.bn\.running_var'\]"),
    (lambda s: s.update({"conv_4.model.6.conv.conv.weight": torch.zeros(256, 128, 1, 1)}),
     r"unexpected \['conv_4\.model\.6\.conv\.conv\.weight'\]"),
    (lambda s: s.update({"conv1.conv.weight": torch.zeros(64, 1, 3, 3)}),
     r"wrong shape \['conv1\.conv\.weight'\]"),
])
def test_mobilefacenet_loading_is_strict_and_names_file_and_key(tmp_path, edit, message) -> None:
    from dfer.landmark_features.mobilefacenet import load_mobilefacenet

    state = public_state(seed=2)
    edit(state)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=rf"bad\.pth \(landmark_features\.weights\) does not fit .*{message}"):
        load_mobilefacenet.__wrapped__(str(path), "cpu")


def test_mobilefacenet_without_weights_says_what_to_set(tmp_path) -> None:
    frames = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(FileNotFoundError, match=r"set landmark_features\.weights .*mobilefacenet_model_best"):
        extract_features(frames, {"device": "cpu"})
    with pytest.raises(FileNotFoundError, match=r"nothing\.pth \(landmark_features\.weights\)"):
        extract_features(frames, {"device": "cpu", "weights": str(tmp_path / "nothing.pth")})
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read the MobileFaceNet checkpoint .*junk\.pth"):
        extract_features(frames, {"device": "cpu", "weights": str(tmp_path / "junk.pth")})


def test_config_refuses_unknown_keys_and_impossible_combinations() -> None:
    with pytest.raises(ValueError, match=r"unknown landmark_features setting\(s\) \['weight'\]"):
        LandmarkFeaturesConfig.from_dict({"weight": "x"})
    with pytest.raises(ValueError, match="'backend' must be one of 'mobilefacenet', 'fan_heatmaps'"):
        LandmarkFeaturesConfig.from_dict({"backend": "auto"})
    with pytest.raises(ValueError, match="random_init is for backend mobilefacenet only"):
        LandmarkFeaturesConfig.from_dict({"backend": "fan_heatmaps", "random_init": True})
    with pytest.raises(ValueError, match="weights or random_init, not both"):
        LandmarkFeaturesConfig.from_dict({"weights": "a.pth", "random_init": True})
    cfg = LandmarkFeaturesConfig.from_dict({"backend": "fan_heatmaps", "device": "cpu"})
    assert (cfg.kind.name, cfg.kind.channels) == ("fan_heatmap_14", 68)
    assert "device" not in cfg.output_params() and "batch_size" not in cfg.output_params()


def test_the_config_schema_knows_the_section(repo_root) -> None:
    import yaml

    from dfer.config_check import config_problem

    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    schema = repo_root / "workflow" / "schemas" / "config.schema.yaml"
    assert config_problem({**config, "landmark_features": {"backend": "fan_heatmaps", "dtype": "float32"}},
                          schema) is None
    message = config_problem({**config, "landmark_features": {"backend": "pfld"}}, schema)
    assert message.startswith("config error at landmark_features.backend:") and "'mobilefacenet'" in message
    # valid for the schema, refused by the section's dataclass (config_check runs both)
    message = config_problem({**config, "landmark_features": {"random_init": True, "backend": "fan_heatmaps"}},
                             schema)
    assert message.startswith("config error at landmark_features:") and "random_init" in message


# --------------------------------------------------------------------------- shard contract

RANDOM = {"random_init": True, "init_seed": 3, "device": "cpu", "batch_size": 2}


def _write_frames(folder, clips: dict[str, np.ndarray], extra_ids: tuple[str, ...] = ()):
    frames = folder / "frames" / "shard-000.safetensors"
    index = folder / "frames" / "shard-000.parquet"
    write_safetensors(frames, clips, {"stage": "decode"})
    ids = list(clips) + list(extra_ids)
    write_parquet(index, pd.DataFrame({"clip_id": ids, "label": ["happiness"] * len(ids)}), {})
    return frames, index


def _outputs(folder):
    d = folder / "landmark_features"
    return d / "shard-000.safetensors", d / "shard-000.parquet", d / "shard-000.failures.parquet"


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lf")
    rng = np.random.default_rng(4)
    clips = {"b": rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8),
             "a": rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8),
             "wide": rng.integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)}
    frames, index = _write_frames(folder, clips, extra_ids=("lost",))
    out, out_index, fail = _outputs(folder)
    from dfer.cli import main

    assert main(["landmark-features", "--frames", str(frames), "--index", str(index), "--out", str(out),
                 "--out-index", str(out_index), "--out-failures", str(fail),
                 "--params", json.dumps(RANDOM)]) == 0
    return clips, out, out_index, fail


def test_shard_writes_tensors_index_failures_and_provenance(shard) -> None:
    clips, out, out_index, fail = shard
    from safetensors.numpy import load_file

    tensors = load_file(str(out))
    assert sorted(tensors) == ["a", "b"]
    for clip_id in ("a", "b"):
        t = tensors[clip_id]
        assert t.dtype == np.float16 and t.shape == (len(clips[clip_id]), 128, 14, 14)
        direct = extract_features(clips[clip_id], RANDOM)
        np.testing.assert_array_equal(t, direct.astype(np.float16))
        assert float(np.abs(direct).max()) > 0.1  # float16 holds real values, not underflow
    table = pq.read_table(out_index)
    assert table.schema.remove_metadata() == SCHEMA
    assert table.column("clip_id").to_pylist() == ["b", "a"]  # index order
    assert table.column("num_frames").to_pylist() == [3, 2]
    direct_b = extract_features(clips["b"], RANDOM)
    assert table.column("abs_max").to_pylist()[0] == pytest.approx(float(np.abs(direct_b).max()), rel=1e-6)
    assert table.column("mean").to_pylist()[0] == pytest.approx(float(direct_b.mean()), rel=1e-5, abs=1e-6)
    failures = pq.read_table(fail).to_pylist()
    assert {(f["clip_id"], f["error_type"]) for f in failures} == {("wide", "bad_input"), ("lost", "missing_frames")}
    assert all(f["stage"] == "landmark_features" and f["clip_id"] in f["message"] for f in failures)
    for path in (out, out_index, fail):
        meta = read_meta(path)
        assert meta["stage"] == "landmark_features" and meta["feature_kind"] == "mobilefacenet_conv4"
        assert (meta["channels"], meta["grid"], meta["input_size"], meta["dtype"]) == (128, 14, 112, "float16")
        assert meta["backend"] == "mobilefacenet" and meta["weights"] == {"random_init_seed": 3}
        assert "device" not in meta["params"] and meta["params"]["normalization"] == "imagenet"
    meta = read_meta(out)
    assert (meta["clips"], meta["failed_clips"], meta["frames"]) == (2, 2, 5)


def test_reader_returns_the_maps_and_refuses_another_kind(shard) -> None:
    clips, out, _, _ = shard
    maps = read_landmark_features(out, "mobilefacenet_conv4")
    assert sorted(maps) == ["a", "b"] and maps["a"].dtype == np.float32
    np.testing.assert_array_equal(maps["b"], extract_features(clips["b"], RANDOM).astype(np.float16).astype(np.float32))
    with open_landmark_features(out, "mobilefacenet_conv4") as features:
        assert "a" in features and len(features) == 2 and features.kind.channels == 128
        with pytest.raises(KeyError, match="clip 'zz' has no landmark features"):
            features.get("zz")
    with pytest.raises(WrongFeatureKindError,
                       match=r"holds landmark features of kind 'mobilefacenet_conv4' \(128 channels.*"
                             r"'fan_heatmap_14' \(68 channels\) was asked for.*backend: fan_heatmaps"):
        read_landmark_features(out, "fan_heatmap_14")
    with pytest.raises(ValueError, match="unknown landmark feature kind 'landmarks68'; known: mobilefacenet_conv4"):
        read_landmark_features(out, "landmarks68")


def test_reader_refuses_a_shard_of_another_stage(tmp_path) -> None:
    frames, _ = _write_frames(tmp_path, {"a": np.zeros((1, 8, 8, 3), np.uint8)})
    with pytest.raises(ValueError, match="is not a landmark-feature shard .*'decode'"):
        read_landmark_features(frames, "mobilefacenet_conv4")


def test_fan_shard_records_its_kind_and_weights(tmp_path) -> None:
    ckpt = _save_random_fan(tmp_path)
    frames, index = _write_frames(tmp_path, {"a": np.full((1, 64, 64, 3), 90, np.uint8)})
    out, out_index, fail = _outputs(tmp_path)
    summary = run_shard(frames, index, out, out_index, fail,
                        {"backend": "fan_heatmaps", "weights": str(ckpt), "device": "cpu", "dtype": "float32"})
    assert summary == {"clips": 1, "failed_clips": 0, "frames": 1}
    meta = read_meta(out)
    assert (meta["feature_kind"], meta["channels"], meta["input_size"]) == ("fan_heatmap_14", 68, 256)
    assert meta["model"] == "face_alignment:2DFAN-4" and meta["weights"]["file"] == str(ckpt)
    assert meta["weights"]["digest"].startswith("sha256:") and len(meta["weights"]["digest"]) == 71
    maps = read_landmark_features(out, "fan_heatmap_14")
    assert maps["a"].shape == (1, 68, 14, 14)
    with pytest.raises(WrongFeatureKindError, match="kind 'fan_heatmap_14'.*backend: mobilefacenet"):
        read_landmark_features(out, "mobilefacenet_conv4")


def test_missing_weights_stop_the_job_before_any_clip_and_empty_shards_are_valid(tmp_path) -> None:
    frames, index = _write_frames(tmp_path, {"a": np.zeros((1, 32, 32, 3), np.uint8)})
    out, out_index, fail = _outputs(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"landmark_features\.weights"):
        run_shard(frames, index, out, out_index, fail, {"weights": str(tmp_path / "none.pth")})
    assert not out.exists() and not out_index.exists() and not fail.exists()
    empty = tmp_path / "empty"
    frames, index = _write_frames(empty, {})
    out, out_index, fail = _outputs(empty)
    assert run_shard(frames, index, out, out_index, fail, RANDOM) == {"clips": 0, "failed_clips": 0, "frames": 0}
    assert pq.read_table(out_index).num_rows == 0 and pq.read_table(fail).num_rows == 0
    assert read_landmark_features(out, "mobilefacenet_conv4") == {}


def test_values_that_float16_cannot_hold_fail_the_clip_not_the_shard() -> None:
    ok = np.array([1.5, -65504.0], np.float32)
    assert stored(ok, "float16").dtype == np.float16
    with pytest.raises(ClipFailure, match=r"up to 7e\+04 exceed float16's range; set landmark_features\.dtype: float32"):
        stored(np.array([70000.0], np.float32), "float16")
    assert stored(np.array([70000.0], np.float32), "float32")[0] == 70000.0
    with pytest.raises(ClipFailure, match="non-finite") as info:
        stored(np.array([np.nan], np.float32), "float32")
    assert info.value.error_type == "backend_error"
