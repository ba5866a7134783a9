"""Parsing stage: label mapping of both facer label sets, the polygon parser on a known face,
the facer code path with a tiny TorchScript network, and the shard contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from face_geometry import SIZE, square_face
from safetensors import safe_open

from dfer.core.artifacts import read_meta, write_parquet, write_safetensors
from dfer.landmarks.api import LandmarkResult
from dfer.landmarks.table import SCHEMA as LANDMARK_SCHEMA
from dfer.landmarks.table import results_table
from dfer.parsing import LABEL_INDEX, LABELS, SCHEMA, ParsingConfig, parse_clip, resolve_backend
from dfer.parsing import run_shard as parse_shard
from dfer.parsing.labels import area_fractions, label_lut, seg_to_canonical
from dfer.parsing.polygon import parse_points

# facer's models are TorchScript files; torch marks the jit API deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

LAPA = ["background", "face", "rb", "lb", "re", "le", "nose", "ulip", "imouth", "llip", "hair"]
CELEBM = ["background", "neck", "face", "cloth", "rr", "lr", "rb", "lb", "re", "le", "nose",
          "imouth", "llip", "ulip", "hair", "eyeg", "hat", "earr", "neck_l"]


# ---------------------------------------------------------------- label mapping (facer output)


@pytest.mark.parametrize("names", [LAPA, CELEBM], ids=["lapa", "celebm"])
def test_facer_logits_are_mapped_by_name(names: list[str]) -> None:
    """Each class index of facer's output becomes the canonical id of its *name*."""
    c = len(names)
    classes = torch.arange(c).repeat(2, 1)[:, :, None].expand(2, c, 3)  # [N=2, H=C, W=3]
    classes = torch.stack([classes[0], classes[1].flip(0)])
    logits = torch.nn.functional.one_hot(classes, c).permute(0, 3, 1, 2).float() * 5.0 - 1.0
    out = seg_to_canonical({"logits": logits, "label_names": names})
    assert out.dtype == np.uint8 and out.shape == (2, c, 3)
    expected = {"face": "skin", "rb": "r_brow", "lb": "l_brow", "re": "r_eye", "le": "l_eye",
                "ulip": "upper_lip", "llip": "lower_lip", "imouth": "inner_mouth",
                "neck_l": "necklace", "eyeg": "eyeglasses", "rr": "r_ear", "lr": "l_ear",
                "earr": "earring"}
    for i, name in enumerate(names):
        want = LABEL_INDEX[expected.get(name, name)]
        assert (out[0, i] == want).all(), name
        assert (out[1, c - 1 - i] == want).all(), name


def test_lapa_and_celebm_agree_on_shared_regions() -> None:
    """The two orders differ (ulip is class 7 in lapa, 13 in celebm); names make them agree."""
    lapa, celebm = label_lut(LAPA), label_lut(CELEBM)
    assert LAPA.index("ulip") != CELEBM.index("ulip")
    for name in set(LAPA) & set(CELEBM):
        assert lapa[LAPA.index(name)] == celebm[CELEBM.index(name)]
    assert sorted(set(lapa.tolist())) == list(range(11))  # lapa covers ids 0..10
    assert sorted(set(celebm.tolist())) == list(range(len(LABELS)))  # celebm covers all 19


def test_label_mapping_errors_are_explicit() -> None:
    with pytest.raises(ValueError, match=r"parser label 'tail' \(class 2\) has no canonical label"):
        label_lut(["background", "face", "tail"])
    logits = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="3 classes but 2 label names"):
        seg_to_canonical({"logits": logits, "label_names": ["background", "face"]})


def test_facer_names_match_the_installed_facer() -> None:
    """Our name table covers every label the installed pyfacer models predict."""
    from dfer.parsing.facer_backend import label_names

    assert label_names("farl/lapa/448") == LAPA
    assert label_names("farl/celebm/448") == CELEBM


# ------------------------------------------------------------------------- polygon parser


def test_polygon_parser_regions_on_the_square_face() -> None:
    pts = square_face()
    m = parse_points(pts, SIZE)
    assert m.shape == (SIZE, SIZE) and m.dtype == np.uint8
    at = {name: int(m[y, x]) for name, (x, y) in {
        "r_eye": (78, 95), "l_eye": (146, 95), "nose": (112, 122), "inner_mouth": (112, 160),
        "upper_lip": (112, 153), "lower_lip": (112, 167), "r_brow": (78, 75), "l_brow": (146, 75),
        "skin": (60, 140), "background": (10, 10),
    }.items()}
    assert at == {k: LABEL_INDEX[k] for k in at}
    assert m[:, :39].max() == 0 and m[:, 186:].max() == 0 and m[:69].max() == 0  # outside hull
    count = {name: int((m == LABEL_INDEX[name]).sum()) for name in LABELS}
    # hexagon 32 x 12 with corners at mid-height: 2/3 of its box
    assert count["r_eye"] == count["l_eye"] == pytest.approx(256, rel=0.15)
    # nose: hull of the bridge top (112, 90) and the base 100..124 at y 130: 24 * 40 / 2
    assert count["nose"] == pytest.approx(480, rel=0.15)
    # brows: 44 px lines thickened by 0.18 * eye distance (68 px) towards the mouth
    assert count["r_brow"] == count["l_brow"] == pytest.approx(44 * 0.18 * 68, rel=0.2)
    assert count["inner_mouth"] == pytest.approx(52 * 8 / 2 + 28 * 8, rel=0.25)
    # the mouth is symmetric top-bottom (up to which side owns the pixels on shared edges)
    assert count["upper_lip"] == pytest.approx(count["lower_lip"], rel=0.05)
    face = sum(count[n] for n in LABELS if n != "background")
    assert face == pytest.approx(144 * 120, rel=0.03)  # hull: x 40..184, y 70..190
    assert count["hair"] == count["neck"] == 0  # the polygon parser knows no such regions
    # regions sit where the points say: eye centroids on the hexagon centres
    ys, xs = np.nonzero(m == LABEL_INDEX["r_eye"])
    assert abs(xs.mean() - 78) < 1 and abs(ys.mean() - 95) < 1


def test_polygon_parser_mirrors_with_the_face() -> None:
    pts = square_face()
    mirrored = pts.copy()
    mirrored[:, 0] = SIZE - 1 - pts[:, 0]
    a, b = parse_points(pts, SIZE), parse_points(mirrored, SIZE)
    # mirroring moves the regions but keeps their point-derived names
    assert (a == LABEL_INDEX["r_eye"]).sum() == (b == LABEL_INDEX["r_eye"]).sum()
    assert b[95, SIZE - 1 - 78] == LABEL_INDEX["r_eye"]


def test_polygon_parser_without_points_is_background_and_checks_shapes() -> None:
    pts = square_face()
    pts[5] = np.nan
    assert parse_points(pts, SIZE).max() == 0
    with pytest.raises(ValueError, match=r"expected 68 points \[68, 2\]"):
        parse_points(np.zeros((5, 2)), SIZE)
    frames = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    with pytest.raises(ValueError, match=r"expected points \[2, 68, 2\] for 2 frames"):
        parse_clip(frames, np.zeros((3, 68, 2)), {"backend": "landmarks"})


def test_area_fractions_sum_to_one() -> None:
    m = parse_points(square_face(), SIZE)
    areas = area_fractions(np.stack([m, np.zeros_like(m)]))
    assert areas.shape == (2, len(LABELS)) and areas.dtype == np.float32
    np.testing.assert_allclose(areas.sum(1), 1.0, rtol=1e-6)
    assert areas[1, 0] == 1.0
    assert areas[0, LABEL_INDEX["r_eye"]] == pytest.approx((m == 5).sum() / SIZE**2)


# --------------------------------------------------------- facer backend, offline, tiny network


class _RedToClass(torch.nn.Module):
    """Stand-in FaRL network: the class of a pixel is ``floor(red * C)``; ``(logits, aux)`` out."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        centres = (torch.arange(self.num_classes, dtype=x.dtype) + 0.5).view(1, -1, 1, 1)
        logits = -((x[:, :1] * self.num_classes - centres) ** 2)
        return logits, x


def _tiny_facer_weights(tmp_path, model: str, num_classes: int):
    from dfer.parsing.facer_backend import resolve_weights, weights_url

    name = weights_url(model).rsplit("/", 1)[1]
    torch.jit.save(torch.jit.script(_RedToClass(num_classes)), str(tmp_path / name))
    assert resolve_weights(model, tmp_path) == tmp_path / name
    return tmp_path


@pytest.mark.parametrize(("model", "names"), [("farl/lapa/448", LAPA),
                                              ("farl/celebm/448", CELEBM)])
def test_facer_backend_runs_a_local_torchscript_parser(tmp_path, model, names) -> None:
    """The real facer warp / unwarp path with a tiny scripted network, mapped by name."""
    weights = _tiny_facer_weights(tmp_path, model, len(names))
    k = names.index("ulip")
    frames = np.zeros((3, SIZE, SIZE, 3), np.uint8)
    frames[..., 0] = round((k + 0.5) / len(names) * 255)  # every pixel says: class "ulip"
    points = np.stack([square_face()] * 3)
    points[1] = np.nan  # a frame without landmarks: all background, not sent to the parser
    cfg = {"backend": "facer", "model": model, "device": "cpu", "weights": str(weights),
           "batch_size": 2}
    maps = parse_clip(frames, points, cfg)
    assert maps.shape == (3, SIZE, SIZE) and maps.dtype == np.uint8
    assert maps[1].max() == 0
    for m in (maps[0], maps[2]):
        lip = (m == LABEL_INDEX["upper_lip"]).mean()
        assert lip > 0.5  # the aligned face area and more
        # other labels only on the thin rim where bilinear warping blends red with padding
        assert ((m != 0) & (m != LABEL_INDEX["upper_lip"])).mean() < 0.05
        assert m[95, 112] == LABEL_INDEX["upper_lip"]


def test_facer_without_weights_names_the_path_and_setting(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    frames = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    points = square_face()[None]
    with pytest.raises(FileNotFoundError, match=r"not found at .*nowhere.*parsing\.weights"):
        parse_clip(frames, points, {"backend": "facer", "weights": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError, match=r"celebm.*torch hub cache.*parsing\.weights"):
        parse_clip(frames, points, {"backend": "facer", "model": "farl/celebm/448"})
    assert resolve_backend(ParsingConfig()) == "landmarks"  # auto without CUDA / weights


def test_auto_parser_needs_both_cuda_and_facer_weights(tmp_path, monkeypatch) -> None:
    from dfer.parsing.api import model_name

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    _tiny_facer_weights(checkpoints, "farl/celebm/448", len(CELEBM))
    cfg = ParsingConfig(model="farl/celebm/448")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend(cfg) == "landmarks"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend(cfg) == "facer" and model_name(cfg) == "facer:farl/celebm/448"
    assert resolve_backend(ParsingConfig()) == "landmarks"  # lapa's weights are not there


def test_config_rejects_unknown_settings_and_models() -> None:
    with pytest.raises(ValueError, match="unknown parsing setting"):
        ParsingConfig.from_dict({"modle": "farl/lapa/448"})
    with pytest.raises(ValueError, match="parsing.model must be"):
        ParsingConfig.from_dict({"model": "farl/helen/448"})
    with pytest.raises(ValueError, match="parsing setting 'backend' must be one of 'auto', 'facer', 'landmarks', got 'dlib'"):
        ParsingConfig.from_dict({"backend": "dlib"})


# ------------------------------------------------------------------------- shard contract


def _result(points: np.ndarray) -> LandmarkResult:
    t = len(points)
    has = np.isfinite(points).all(axis=(1, 2))
    return LandmarkResult(points.astype(np.float32), np.zeros((t, 4), np.float32),
                          np.ones(t, np.float32), has, np.full(t, -1, np.int16))


def _write_inputs(tmp_path, frames: dict[str, np.ndarray], landmarks: dict[str, np.ndarray],
                  index_ids: list[str]):
    fpath = tmp_path / "frames" / "shard-000.safetensors"
    ipath = tmp_path / "frames" / "shard-000.parquet"
    lpath = tmp_path / "landmarks" / "shard-000.parquet"
    write_safetensors(fpath, frames, {"stage": "decode"})
    write_parquet(ipath, pd.DataFrame({"clip_id": index_ids}), {"stage": "decode"})
    table = results_table({c: _result(p) for c, p in landmarks.items()})
    write_parquet(lpath, table, {"stage": "landmarks"}, schema=LANDMARK_SCHEMA)
    return fpath, ipath, lpath


def test_parsing_shard_contract_and_failures(tmp_path) -> None:
    face = square_face()
    gap = np.stack([face, face, face])
    gap[1] = np.nan
    frames = {"a": np.zeros((3, SIZE, SIZE, 3), np.uint8),
              "short": np.zeros((2, SIZE, SIZE, 3), np.uint8)}
    landmarks = {"a": gap, "short": gap, "lost": gap}  # 'lost' has landmarks but no frames
    fpath, ipath, lpath = _write_inputs(tmp_path, frames, landmarks,
                                        ["a", "short", "lost", "noface"])  # noface failed upstream
    out = tmp_path / "parsing"
    from dfer.cli import main

    assert main(["parsing", "--frames", str(fpath), "--index", str(ipath), "--landmarks", str(lpath),
                 "--out-maps", str(out / "m.safetensors"), "--out-index", str(out / "m.parquet"),
                 "--out-failures", str(out / "f.parquet"),
                 "--params", json.dumps({"backend": "landmarks"})]) == 0
    with safe_open(str(out / "m.safetensors"), framework="numpy") as fh:
        assert list(fh.keys()) == ["a"]
        maps = fh.get_tensor("a")
    assert maps.shape == (3, SIZE, SIZE) and maps.dtype == np.uint8
    np.testing.assert_array_equal(maps[0], parse_points(face, SIZE))
    assert maps[1].max() == 0
    stats = pq.read_table(out / "m.parquet")
    assert stats.schema.remove_metadata() == SCHEMA
    assert stats.column("clip_id").to_pylist() == ["a"] * 3
    assert stats.column("has_points").to_pylist() == [True, False, True]
    np.testing.assert_allclose(stats.column("area_r_eye").to_numpy(),
                               area_fractions(maps)[:, LABEL_INDEX["r_eye"]])
    assert stats.column("area_background").to_pylist()[1] == 1.0
    failures = pq.read_table(out / "f.parquet").to_pylist()
    assert {(f["clip_id"], f["error_type"]) for f in failures} == {("short", "bad_input"),
                                                                   ("lost", "missing_frames")}
    assert all(f["stage"] == "parsing" and f["clip_id"] in f["message"] for f in failures)
    meta = read_meta(out / "m.safetensors")
    assert meta["backend"] == "landmarks" and meta["model"] == "polygon68"
    assert meta["labels"] == list(LABELS) and meta["failed_clips"] == 2 and meta["frames"] == 3
    assert meta["eye_side_agreement"] == 1.0  # polygons follow the points by construction
    assert read_meta(out / "m.parquet") == meta


def test_parsing_empty_shard_writes_valid_empty_artifacts(tmp_path) -> None:
    fpath, ipath, lpath = _write_inputs(tmp_path, {}, {}, [])
    paths = [tmp_path / "p" / n for n in ("m.safetensors", "m.parquet", "f.parquet")]
    summary = parse_shard(fpath, ipath, lpath, *paths, {"backend": "landmarks"})
    assert summary == {"clips": 0, "failed_clips": 0, "frames": 0, "eye_side_agreement": None}
    with safe_open(str(paths[0]), framework="numpy") as fh:
        assert list(fh.keys()) == []
    assert read_meta(paths[0])["stage"] == "parsing"
    assert pq.read_table(paths[1]).num_rows == 0 and pq.read_table(paths[2]).num_rows == 0
    assert pq.read_table(paths[1]).schema.remove_metadata() == SCHEMA


def test_facer_shard_without_weights_fails_once_not_per_clip(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    face = np.stack([square_face()])
    fpath, ipath, lpath = _write_inputs(tmp_path, {"a": np.zeros((1, SIZE, SIZE, 3), np.uint8)},
                                        {"a": face}, ["a"])
    paths = [tmp_path / "p" / n for n in ("m.safetensors", "m.parquet", "f.parquet")]
    with pytest.raises(FileNotFoundError, match="parsing.weights"):
        parse_shard(fpath, ipath, lpath, *paths, {"backend": "facer"})
    assert not any(p.exists() for p in paths)


def test_eye_side_votes_detect_swapped_left_right_names() -> None:
    from dfer.parsing.checks import eye_side_votes

    face = square_face()
    maps = np.stack([parse_points(face, SIZE)] * 2)
    points = np.stack([face, face])
    assert eye_side_votes(maps, points) == (2, 2)
    swapped = maps.copy()
    swapped[maps == LABEL_INDEX["r_eye"]] = LABEL_INDEX["l_eye"]
    swapped[maps == LABEL_INDEX["l_eye"]] = LABEL_INDEX["r_eye"]
    assert eye_side_votes(swapped, points) == (0, 2)
    points[1] = np.nan  # no points: not checked
    no_eyes = maps.copy()
    no_eyes[0][no_eyes[0] == LABEL_INDEX["l_eye"]] = 0  # one eye missing: not checked
    assert eye_side_votes(no_eyes, points) == (0, 0)
