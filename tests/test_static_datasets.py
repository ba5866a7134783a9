"""Static FER datasets (issue 27): RAF-DB, AffectNet and FERPlus read as one-frame clips.

Each layout's label file is written here with sample lines in its official form; the expected
classes, folds and face boxes are worked out by hand from the datasets' documented numberings
(data_manifests/README.md, "Static datasets"), never read back from the code under test. The
decode stage cuts a still image at the box its dataset gives (checked against the pixels of a
region computed by hand), keeps one frame of it, and counts still images apart from one-frame
clips; training repeats the frame to ``data.num_frames``; evaluation and the report name WAR
``accuracy`` for a still-image dataset.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from safetensors.numpy import load_file

from dfer.core.artifacts import read_meta, read_parquet, write_parquet
from dfer.core.paths import shard_file
from dfer.manifests import ManifestError, build_manifest, sync_report
from dfer.manifests.static_readers import ferplus_majority
from dfer.video import decode_shard
from dfer.video.api import decode_clip
from dfer.video.errors import MissingFile, TooSmall

REPO = Path(__file__).resolve().parents[1]
INF = math.inf


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def image(path: Path, pixels: np.ndarray) -> Path:
    """Write RGB ``pixels`` losslessly (PNG) or as a JPEG, by the path's extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(pixels[..., ::-1]))
    return path


def rows_of(build) -> dict[str, dict]:  # noqa: ANN001 - a ManifestBuild
    table = build.table.to_pandas()
    out = {}
    for row in table.itertuples(index=False):
        box = getattr(row, "face_box", None)
        out[row.clip_id] = {"label": row.label, "idx": int(row.label_idx), "fold": int(row.test_fold),
                            "kind": row.source_kind,
                            "box": None if box is None else [float(v) for v in box]}
    return out


# -- RAF-DB -------------------------------------------------------------------------------------

def rafdb(tmp_path: Path, lines: str, aligned: tuple[str, ...] = (),
          original: tuple[str, ...] = ()) -> dict:
    basic = tmp_path / "RAF-DB" / "basic"
    label = write(basic / "EmoLabel" / "list_patition_label.txt", lines)
    for stem in aligned:
        image(basic / "Image" / "aligned" / f"{stem}_aligned.jpg", np.zeros((100, 100, 3), np.uint8))
    for stem in original:
        image(basic / "Image" / "original" / f"{stem}.jpg", np.zeros((120, 90, 3), np.uint8))
    return {"layout": "rafdb", "root": str(basic), "split_files": [str(label)], "num_shards": 2}


def test_rafdb_labels_by_name_folds_and_face_boxes(tmp_path: Path) -> None:
    definition = rafdb(tmp_path, "train_00001.jpg 5\ntrain_00002.jpg 1\ntest_0001.jpg 7\n"
                                 "test_0002.jpg 4\n",
                       aligned=("train_00001", "train_00002", "test_0002"), original=("test_0001",))
    build = build_manifest("rafdb", definition)
    # RAF-DB: 1 Surprise 2 Fear 3 Disgust 4 Happiness 5 Sadness 6 Anger 7 Neutral, and the
    # class order is the official one, so label_idx = number - 1
    assert rows_of(build) == {
        "train_00001": {"label": "sadness", "idx": 4, "fold": 0, "kind": "image", "box": [0, 0, INF, INF]},
        "train_00002": {"label": "surprise", "idx": 0, "fold": 0, "kind": "image", "box": [0, 0, INF, INF]},
        # only the original photo exists: no box given, the face is detected
        "test_0001": {"label": "neutral", "idx": 6, "fold": 1, "kind": "image", "box": None},
        "test_0002": {"label": "happiness", "idx": 3, "fold": 1, "kind": "image", "box": [0, 0, INF, INF]},
    }
    assert build.labels == ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
    assert build.num_folds == 1 and build.static
    paths = dict(zip(build.table.column("clip_id").to_pylist(), build.table.column("path").to_pylist(),
                     strict=True))
    assert paths["test_0001"].endswith("Image/original/test_0001.jpg")
    assert paths["train_00001"].endswith("Image/aligned/train_00001_aligned.jpg")
    assert list(build.numberings.values()) == ["rafdb_official (the file's form)"]


def test_rafdb_problems_are_listed_together_with_file_and_line(tmp_path: Path) -> None:
    definition = rafdb(tmp_path, "train_00001.jpg 5\ntrain_00001.jpg 5\ntrain_00003.jpg 8\n"
                                 "val_0001.jpg 3\ntrain_00004.jpg\ntest_0001.jpg 0\n",
                       aligned=("train_00001", "train_00003", "test_0001"))
    label = definition["split_files"][0]
    with pytest.raises(ManifestError) as info:
        build_manifest("rafdb", definition)
    assert info.value.problems == [
        f"{label}:4: cannot tell whether val_0001.jpg is a training or a test image: RAF-DB "
        "image names start with train_ or test_",
        f"{label}:5: malformed line: expected `train_00001.jpg 5` (image name and label), got 1 "
        "field(s): 'train_00004.jpg'",
        f"{label}:2: duplicate clip id train_00001 (also at {label}:1)",
        f"{label}:3: label number 8 is out of range (numbering rafdb_official: 1 surprise, "
        "2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral)",
        f"{label}:6: label number 0 is out of range (numbering rafdb_official: 1 surprise, "
        "2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral)",
    ]


def test_rafdb_missing_image_names_every_place_looked(tmp_path: Path) -> None:
    definition = rafdb(tmp_path, "train_00001.jpg 5\ntest_0009.jpg 2\n", aligned=("train_00001",))
    with pytest.raises(ManifestError) as info:
        build_manifest("rafdb", definition)
    assert info.value.problems == [
        f"{definition['split_files'][0]}:2: missing image: no Image/aligned/test_0009_aligned.jpg, "
        "Image/original/test_0009.jpg, test_0009_aligned.jpg, test_0009.jpg under "
        f"{definition['root']}"]


def test_rafdb_with_another_named_numbering_is_refused(tmp_path: Path) -> None:
    definition = rafdb(tmp_path, "train_00001.jpg 5\ntest_0001.jpg 2\n",
                       aligned=("train_00001", "test_0001"))
    with pytest.raises(ValueError, match="layout rafdb is read with numbering rafdb_official "
                                         r"\(1 surprise, .*\), not dfew_official"):
        build_manifest("rafdb", {**definition, "numbering": "dfew_official"})


# -- AffectNet ----------------------------------------------------------------------------------

AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                    "expression,valence,arousal\n")
TRAINING = AFFECTNET_HEADER + (
    "1/a.jpg,10,20,100,120,30.5;40.1;50.2;60.3,1,0.81,0.32\n"   # 2: happiness, box
    "1/b.jpg,0,0,-1,-1,,7,-0.4,0.3\n"                          # 3: contempt, no usable box
    "2/c.jpg,5,5,50,50,,8,-2,-2\n"                             # 4: None
    "2/d.jpg,5,5,50,50,,9,-2,-2\n"                             # 5: Uncertain
    "2/e.png,5,5,50,50,,10,-2,-2\n"                            # 6: Non-Face
    "3/f.jpg,1,2,30,40,,6,-0.6,0.7\n"                          # 7: anger
)
VALIDATION = AFFECTNET_HEADER + (
    "9/g.jpg,0,0,64,64,,0,0.0,0.0\n"                           # 2: neutral (test)
    "9/h.jpg,0,0,64,64,,3,0.2,0.8\n"                           # 3: surprise (test)
)


def affectnet(tmp_path: Path, layout: str, training: str = TRAINING,
              validation: str = VALIDATION) -> dict:
    lists = tmp_path / "AffectNet" / "Manually_Annotated_file_lists"
    images = tmp_path / "AffectNet" / "Manually_Annotated_Images"
    files = [write(lists / "training.csv", training), write(lists / "validation.csv", validation)]
    for csv in files:
        for line in csv.read_text().splitlines()[1:]:
            image(images / line.split(",")[0], np.zeros((80, 80, 3), np.uint8))
    return {"layout": layout, "root": str(images), "split_files": [str(f) for f in files],
            "num_shards": 2}


@pytest.mark.parametrize("layout", ["affectnet7", "affectnet8"])
def test_affectnet_expressions_boxes_and_excluded_rows(tmp_path: Path, layout: str) -> None:
    definition = affectnet(tmp_path, layout)
    report = sync_report("affectnet", definition, tmp_path / "results")
    build = report.build
    # 0 Neutral 1 Happy 2 Sad 3 Surprise 4 Fear 5 Disgust 6 Anger 7 Contempt; class order = ids
    expected = {
        "1_a": {"label": "happiness", "idx": 1, "fold": 0, "kind": "image", "box": [10, 20, 110, 140]},
        "3_f": {"label": "anger", "idx": 6, "fold": 0, "kind": "image", "box": [1, 2, 31, 42]},
        "9_g": {"label": "neutral", "idx": 0, "fold": 1, "kind": "image", "box": [0, 0, 64, 64]},
        "9_h": {"label": "surprise", "idx": 3, "fold": 1, "kind": "image", "box": [0, 0, 64, 64]},
    }
    excluded = {"8 None (affectnet: not an expression)": 1,
                "9 Uncertain (affectnet: not an expression)": 1,
                "10 Non-Face (affectnet: not an expression)": 1}
    if layout == "affectnet8":
        expected["1_b"] = {"label": "contempt", "idx": 7, "fold": 0, "kind": "image", "box": None}
    else:
        excluded["contempt (7): not a class of AffectNet-7"] = 1
    assert rows_of(build) == expected
    assert build.excluded == dict(sorted(excluded.items()))
    meta = read_meta(tmp_path / "results" / "affectnet" / "manifest" / "manifest.parquet")
    assert meta["excluded"] == build.excluded
    # the shard manifests carry the box to the decode stage
    shards = [pq.read_table(tmp_path / "results" / "affectnet" / "manifest" / f"shard-{s}.parquet")
              for s in report.shards]
    assert all("face_box" in t.column_names for t in shards)
    assert sum(t.num_rows for t in shards) == len(expected)


def test_manifest_check_prints_the_excluded_counts(tmp_path: Path, capsys) -> None:
    from dfer.cli import main

    definition = affectnet(tmp_path, "affectnet7")
    config = write(tmp_path / "c.yaml", yaml.safe_dump({"results": str(tmp_path / "results"),
                                                        "dataset_defs": {"affectnet": definition}}))
    assert main(["manifest", "--check", "--config", str(config), "--dataset", "affectnet"]) == 0
    out = capsys.readouterr().out
    assert ("excluded (not part of the dataset): 10 Non-Face (affectnet: not an expression): 1, "
            "8 None (affectnet: not an expression): 1, 9 Uncertain (affectnet: not an expression): 1, "
            "contempt (7): not a class of AffectNet-7: 1") in out
    assert "dataset affectnet (layout affectnet7): 4 clips, 1 fold(s)" in out


def test_affectnet_problems_name_file_and_line(tmp_path: Path) -> None:
    training = AFFECTNET_HEADER + ("1/a.jpg,10,20,100,120,,11,0,0\n"
                                   "__metadata__.jpg,0,0,5,5,,1,0,0\n"
                                   "1/c.jpg,0,0,5,5,,1\n")
    definition = affectnet(tmp_path, "affectnet8", training=training)
    csv = definition["split_files"][0]
    with pytest.raises(ManifestError) as info:
        build_manifest("affectnet", definition)
    assert info.value.problems == [
        f"{csv}:3: malformed line: clip id '__metadata__' is reserved (safetensors keeps it for "
        "a shard's metadata); rename the clip",
        f"{csv}:4: malformed line: expected 9 fields, got 7",
        f"{csv}:2: label number 11 is out of range (numbering affectnet: 0 neutral, 1 happiness, "
        "2 sadness, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt; not expressions: 8 None, "
        "9 Uncertain, 10 Non-Face)",
    ]
    # a list without the columns that matter is one problem at its header
    bad = affectnet(tmp_path / "b", "affectnet7", training="subDirectory_filePath,label\n1/a.jpg,1\n")
    with pytest.raises(ManifestError) as info:
        build_manifest("affectnet", bad)
    assert info.value.problems == [f"{bad['split_files'][0]}:1: header lacks column(s) expression "
                                   "(has: subDirectory_filePath, label; expected subDirectory_filePath,"
                                   "face_x,face_y,face_width,face_height,facial_landmarks,expression,"
                                   "valence,arousal)"]


# -- FERPlus ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("votes", "expected"), [
    # the columns: neutral happiness surprise sadness anger disgust fear contempt unknown NF
    ([6, 0, 1, 1, 0, 0, 0, 0, 2, 0], (0, "")),       # single votes dropped: 6 of 8 neutral
    ([0, 0, 6, 0, 0, 0, 4, 0, 0, 0], (2, "")),       # 6 of 10: surprise
    ([1, 0, 0, 5, 0, 3, 0, 0, 1, 0], (3, "")),       # 5 of 8 once the single votes go: sadness
    ([0, 0, 0, 0, 2, 0, 0, 7, 1, 0], (7, "")),       # contempt
    ([4, 0, 0, 1, 3, 2, 0, 0, 0, 0], (None, "no majority")),   # 4 of 9: not more than half
    ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], (None, "no majority")),   # a tie
    ([1] * 10, (None, "no majority")),                          # nothing left
    ([2, 0, 0, 0, 0, 0, 0, 0, 8, 0], (None, "unknown majority")),
    ([0, 0, 0, 0, 0, 0, 0, 0, 1, 9], (None, "NF (not a face) majority")),
])
def test_ferplus_majority_vote(votes: list[int], expected: tuple) -> None:
    assert ferplus_majority(votes) == expected


FER2013NEW = (
    "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    "Training,fer0000001.png,6,0,1,1,0,0,0,0,2,0\n"        # 2: neutral
    "Training,fer0000016.png,4,6,0,0,0,0,0,0,0,0\n"        # 3: happiness
    "Training,,0,0,0,0,0,0,0,0,0,10\n"                     # 4: no image
    "Training,fer0000172.png,5,0,0,5,0,0,0,0,0,0\n"        # 5: tie
    "PublicTest,fer0028642.png,0,10,0,0,0,0,0,0,0,0\n"     # 6: validation
    "PrivateTest,fer0032226.png,0,0,3,0,0,0,7,0,0,0\n"     # 7: fear (test)
    "PrivateTest,fer0032228.png,0,0,0,0,0,0,0,0,1,9\n"     # 8: NF
)
FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}


def ferplus(tmp_path: Path, text: str = FER2013NEW, **extra) -> dict:
    base = tmp_path / "FERPlus"
    csv = write(base / "fer2013new.csv", text)
    for line in text.splitlines()[1:]:
        usage, name = line.split(",")[:2]
        if name and usage in FOLDERS:
            image(base / FOLDERS[usage] / name, np.zeros((48, 48, 3), np.uint8))
    return {"layout": "ferplus", "root": str(base), "split_files": [str(csv)], "num_shards": 2,
            **extra}


@pytest.mark.parametrize("valid", ["exclude", "train"])
def test_ferplus_majority_labels_sets_and_counted_exclusions(tmp_path: Path, valid: str) -> None:
    build = build_manifest("ferplus", ferplus(tmp_path, ferplus_valid=valid))
    whole = [0, 0, INF, INF]  # the 48 x 48 images are face crops, taken whole
    # class order: fer2013new.csv's columns (neutral 0, happiness 1, ..., fear 6, contempt 7)
    expected = {
        "fer0000001": {"label": "neutral", "idx": 0, "fold": 0, "kind": "image", "box": whole},
        "fer0000016": {"label": "happiness", "idx": 1, "fold": 0, "kind": "image", "box": whole},
        "fer0032226": {"label": "fear", "idx": 6, "fold": 1, "kind": "image", "box": whole},
    }
    excluded = {"FERPlus: NF (not a face) majority": 1, "FERPlus: no majority": 1,
                "FERPlus: no image name (a FER2013 image FERPlus ships no file of)": 1}
    if valid == "train":
        expected["fer0028642"] = {"label": "happiness", "idx": 1, "fold": 0, "kind": "image",
                                  "box": whole}
    else:
        excluded["FERPlus: PublicTest (the validation set; ferplus_valid: exclude)"] = 1
    assert rows_of(build) == expected
    assert build.excluded == dict(sorted(excluded.items()))
    paths = dict(zip(build.table.column("clip_id").to_pylist(), build.table.column("path").to_pylist(),
                     strict=True))
    assert paths["fer0032226"].endswith("FER2013Test/fer0032226.png")


def test_ferplus_per_folder_label_csv_reads_votes_by_position(tmp_path: Path) -> None:
    """The FERPlus repository's FER2013Test/label.csv: no header, a quoted box, ten counts."""
    base = tmp_path / "data"
    csv = write(base / "FER2013Test" / "label.csv",
                'fer0028640.png,"(0, 0, 48, 48)",7,0,0,0,2,0,0,1,0,0\n'
                'fer0028641.png,"(0, 0, 48, 48)",5,5,0,0,0,0,0,0,0,0\n'
                "fer0028642.png,0,0,0,0,0,8,0,2,0,0\n")
    for name in ("fer0028640.png", "fer0028641.png", "fer0028642.png"):
        image(base / "FER2013Test" / name, np.zeros((48, 48, 3), np.uint8))
    build = build_manifest("ferplus", {"layout": "ferplus", "root": str(base),
                                       "split_files": [str(csv)], "num_shards": 1})
    assert {k: (v["label"], v["fold"]) for k, v in rows_of(build).items()} == {
        "fer0028640": ("neutral", 1), "fer0028642": ("disgust", 1)}
    assert build.excluded == {"FERPlus: no majority": 1}


def test_ferplus_problems_name_file_and_line(tmp_path: Path) -> None:
    text = ("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
            "Training,fer0000001.png,6,0,1,1,0,0,0,0,2,0\n"
            "Valid,fer0000002.png,6,0,0,0,0,0,0,0,0,0\n"
            "PrivateTest,fer0000003.png,6,x,0,0,0,0,0,0,0,0\n")
    definition = ferplus(tmp_path, text)
    csv = definition["split_files"][0]
    with pytest.raises(ManifestError) as info:
        build_manifest("ferplus", definition)
    assert info.value.problems == [
        f"{csv}:3: unknown Usage 'Valid' (expected one of Training, PublicTest, PrivateTest)",
        f"{csv}:4: malformed line: vote counts must be whole numbers >= 0"]
    headless = ferplus(tmp_path / "h", "Usage,Image name,neutral,happiness\nTraining,a.png,1,9\n")
    with pytest.raises(ManifestError, match=r"fer2013new.csv:1: header lacks column\(s\) surprise, "
                                            "sadness, anger, disgust, fear, contempt, unknown, NF"):
        build_manifest("ferplus", headless)


# -- decode: a still image is one frame, cut at the given box -----------------------------------

def gradient_image(width: int, height: int) -> np.ndarray:
    """Pixels that tell every position apart (x in red, y in green)."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1),
                     (xs + ys) % 256], axis=-1).astype(np.uint8)


def test_still_image_is_one_frame_cut_at_the_given_box_with_the_margin(tmp_path: Path) -> None:
    pixels = gradient_image(200, 160)
    path = image(tmp_path / "a.png", pixels)
    clip = decode_clip(path, "image", {"size": 32, "margin": 0.25}, face_box=[50, 40, 110, 100])
    # by hand: a 60 px box grown by 25 % per side is a 90 px square around (80, 70)
    expected = cv2.resize(pixels[25:115, 35:125], (32, 32), interpolation=cv2.INTER_AREA)
    assert clip.frames.shape == (1, 32, 32, 3)
    assert np.array_equal(clip.frames[0], expected)
    assert clip.crop_box.tolist() == [35, 25, 125, 115]
    assert (clip.num_source_frames, clip.detector_used, clip.face_found_frac) == (1, "given", 1.0)
    assert clip.frame_indices.tolist() == [0]


def test_48px_face_crop_is_taken_whole_and_upsampled(tmp_path: Path) -> None:
    pixels = gradient_image(48, 48)
    path = image(tmp_path / "fer.png", pixels)
    clip = decode_clip(path, "image", {"size": 224}, face_box=[0, 0, INF, INF])
    assert clip.frames.shape == (1, 224, 224, 3)
    assert clip.crop_box.tolist() == [0, 0, 48, 48]
    assert np.array_equal(clip.frames[0], cv2.resize(pixels, (224, 224), interpolation=cv2.INTER_LINEAR))


def test_given_boxes_off_or_a_box_outside_the_image_detect_instead(tmp_path: Path) -> None:
    path = image(tmp_path / "noise.png", np.random.default_rng(0).integers(0, 256, (64, 96, 3), np.uint8))
    params = {"size": 32, "escalate": []}
    off = decode_clip(path, "image", {**params, "given_boxes": False}, face_box=[0, 0, INF, INF])
    outside = decode_clip(path, "image", params, face_box=[500, 500, 600, 600])
    for clip in (off, outside):  # the detector found no face: the centre crop, no "given"
        assert clip.detector_used is None and clip.crop_box.tolist() == [16, 0, 80, 64]


def test_tiny_and_missing_images_fail_with_their_error_type(tmp_path: Path) -> None:
    with pytest.raises(TooSmall, match=r"frames of 12x12 px are too small"):
        decode_clip(image(tmp_path / "t.png", np.zeros((12, 12, 3), np.uint8)), "image", {"size": 32})
    assert decode_clip(image(tmp_path / "s.png", np.zeros((16, 16, 3), np.uint8)), "image",
                       {"size": 32}, face_box=[0, 0, INF, INF]).frames.shape == (1, 32, 32, 3)
    with pytest.raises(MissingFile, match="gone.jpg: file not found"):
        decode_clip(tmp_path / "gone.jpg", "image", {"size": 32})


def test_decode_shard_counts_still_images_apart_from_one_frame_clips(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    a = image(tmp_path / "a.png", gradient_image(48, 48))
    b = image(tmp_path / "b.png", gradient_image(64, 64))
    manifest = tmp_path / "shard-000.parquet"
    pq.write_table(pa.table({
        "clip_id": ["a", "b"], "path": [str(a), str(b)], "source_kind": ["image", "image"],
        "label": ["anger", "fear"], "label_idx": pa.array([5, 1], pa.int32()),
        "test_fold": pa.array([0, 1], pa.int32()), "shard": pa.array([0, 0], pa.int32()),
        "face_box": pa.array([[0, 0, INF, INF], [8, 8, 40, 40]], pa.list_(pa.float32(), 4))}), manifest)
    out = [tmp_path / "frames" / f"shard-000{s}" for s in (".safetensors", ".parquet", ".failures.parquet")]
    with caplog.at_level(logging.INFO):
        result = decode_shard(manifest, *out, {"size": 32}, progress=False)
    assert result.summary() == "2 clip(s) decoded, 0 failed, 2 of them still images (static)"
    assert (result.one_frame, result.static, result.no_face) == (0, 2, 0)
    assert "single source frame" not in caplog.text
    assert "2 still image(s), one frame each" in caplog.text
    frames = load_file(str(out[0]))
    assert {k: v.shape for k, v in frames.items()} == {"a": (1, 32, 32, 3), "b": (1, 32, 32, 3)}
    index = pd.read_parquet(out[1]).set_index("clip_id")
    assert index["detector_used"].tolist() == ["given", "given"]
    assert index.loc["b", "crop_box"].tolist() == [0, 0, 48, 48]  # 32 px box + 25 % per side
    assert index["source_kind"].tolist() == ["image", "image"]


# -- training and evaluation ----------------------------------------------------------------------

def test_prepare_clip_repeats_a_still_to_the_clip_length() -> None:
    from dfer.train.data import DataConfig, prepare_clip

    still = np.random.default_rng(1).integers(0, 256, (1, 16, 16, 3), np.uint8)
    for rng in (None, np.random.default_rng(0)):  # evaluation and (jittered) training
        item = prepare_clip(still, None, None, DataConfig.from_dict({"num_frames": 4}), 16, None, rng)
        assert item["frames"].shape == (4, 16, 16, 3)
        assert all(torch.equal(item["frames"][t], torch.from_numpy(still[0])) for t in range(4))


DS = "stills"
SIZE = 64  # the tiny backbone's input size: no resize, so the hand reference is exact


MOVED = "stills_00_001"  # a class-0 training clip of fold 1 moved into its test split


@pytest.fixture(scope="module")
def still_results(tmp_path_factory) -> Path:
    """A 3-class, 2-fold synthetic dataset whose clips are still images (one frame, image kind);
    fold 1's test split is unbalanced (3, 2, 2 clips per class), so its UAR and accuracy differ."""
    from support.dataset import write_synthetic_dataset

    root = tmp_path_factory.mktemp("stills")
    write_synthetic_dataset(root, DS, num_classes=3, clips_per_class=4, num_folds=2, frames=1,
                            size=SIZE, num_shards=1)
    for path in (root / DS / "manifest" / "manifest.parquet",
                 shard_file(root, DS, "manifest", "000", ".parquet"),
                 shard_file(root, DS, "frames", "000", ".parquet")):
        table = read_parquet(path)
        table.loc[table["clip_id"] == MOVED, "test_fold"] = 1
        if "num_source_frames" in table:
            table["source_kind"] = "image"
        write_parquet(path, table, read_meta(path))
    return root


def test_still_images_are_static_not_one_frame_in_the_clip_table(still_results: Path) -> None:
    from dfer.train.data import Needs, load_clip_table

    table = load_clip_table(still_results, DS, Needs())
    assert table.static and not table.clips["one_frame"].any() and table.clips["static"].all()
    kept = load_clip_table(still_results, DS, Needs(), one_frame_clips="drop")
    assert len(kept.clips) == 12  # drop leaves out one-frame videos, never still images
    account = table.account(1, "test")
    assert (account.listed, account.evaluated, account.static, account.one_frame) == (7, 7, 7, 0)
    assert account.text("test images") == "evaluated 7 of 7 test images"


def test_static_evaluation_scores_repeated_frames_and_names_accuracy(still_results: Path,
                                                                     tmp_path: Path) -> None:
    from safetensors import safe_open

    from dfer.model.checkpoint import load_checkpoint, save_checkpoint
    from dfer.model.config import ModelConfig
    from dfer.model.fineclip import FineCLIPER
    from dfer.train.evaluate import evaluate_checkpoint, summarize_folds

    cfg = ModelConfig.from_dict({"backbone": "tiny", "pretrained": None, "use_parsing": False,
                                 "use_landmarks": False})
    ckpt = tmp_path / "ckpt" / "checkpoint.safetensors"
    save_checkpoint(ckpt, FineCLIPER(cfg, [f"class{c}" for c in range(3)]), dataset=DS, run="r",
                    params={"data": {"num_frames": 4, "batch_size": 4, "num_workers": 0}})
    metrics = evaluate_checkpoint(ckpt, still_results, DS, 1, tmp_path / "eval", device="cpu")
    manifest = pd.read_parquet(still_results / DS / "manifest" / "manifest.parquet")
    truth = dict(zip(manifest["clip_id"], manifest["label_idx"], strict=True))
    truth = {c: int(t) for c, t in truth.items() if int(manifest.set_index("clip_id").loc[c, "test_fold"]) == 1}
    model, _ = load_checkpoint(ckpt)
    pred = {}
    with safe_open(str(shard_file(still_results, DS, "frames", "000", ".safetensors")), "numpy") as fh, \
            torch.no_grad():
        for clip in truth:
            still = torch.from_numpy(fh.get_tensor(clip))  # [1, S, S, 3]
            pred[clip] = int(model(frames=still.repeat(4, 1, 1, 1)[None]).logits.argmax())
    accuracy = sum(pred[c] == t for c, t in truth.items()) / len(truth)
    recalls = [sum(pred[c] == k for c, t in truth.items() if t == k)
               / sum(1 for t in truth.values() if t == k) for k in range(3)]
    assert len(truth) == 7 and abs(accuracy - sum(recalls) / 3) > 1e-6  # the two differ here
    assert metrics["static"] is True
    assert metrics["accuracy"] == metrics["war"] == pytest.approx(accuracy, abs=1e-12)
    assert metrics["uar"] == pytest.approx(sum(recalls) / 3, abs=1e-12)
    assert metrics["test_clips"]["text"] == "evaluated 7 of 7 test images"
    assert metrics["test_clips"]["static"] == 7
    summary = summarize_folds([tmp_path / "eval" / "metrics.json"], tmp_path / "summary.json")
    assert summary["static"] is True and summary["accuracy"] == summary["war"]
    assert summary["test_clips"]["text"] == "evaluated 7 of 7 test images"


def test_report_shows_still_image_datasets_with_accuracy(tmp_path: Path, capsys) -> None:
    from dfer.cli import main

    results = tmp_path / "results"
    for ds, static, war in (("raf", True, 0.75), ("vid", False, 0.5)):
        m = {"dataset": ds, "run": "r", "fold": 1, "uar": 0.5, "war": war, "num_clips": 4,
             "labels": ["a", "b"], "confusion_matrix": [[2, 0], [1, 1]],
             "test_clips": {"listed": 4, "evaluated": 4, "lost": {}, "text": "evaluated 4 of 4"},
             **({"static": True, "accuracy": war} if static else {})}
        write(results / ds / "train" / "r" / "fold-1" / "metrics.json", json.dumps(m))
    assert main(["report", "--results", str(results), "--datasets", "raf", "vid",
                 "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert "r raf: UAR 50.00 accuracy 75.00 (1 fold, evaluated 4 of 4)" in printed
    assert "r vid: UAR 50.00 WAR 50.00 (1 fold, evaluated 4 of 4)" in printed
    md = (tmp_path / "report" / "report.md").read_text()
    video, stills = md.split("## Results: still-image datasets")
    assert "| run | trained_on | dataset | zero_shot | folds | coverage | uar | war |" in video
    assert "| r | vid | vid | False | 1 | 4 of 4 | 50.00 ± 0.00 | 50.00 ± 0.00 |" in video
    assert "| raf |" not in video
    assert "| run | trained_on | dataset | zero_shot | folds | coverage | uar | accuracy |" in stills
    assert "| r | raf | raf | False | 1 | 4 of 4 | 50.00 ± 0.00 | 75.00 ± 0.00 |" in stills
    summary = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("dataset")
    assert summary.loc["raf", "static"] and not summary.loc["vid", "static"]


# -- the static demo ------------------------------------------------------------------------------

def test_static_demo_generates_and_goes_through_manifest_and_decode(tmp_path: Path) -> None:
    from dfer.demo_static import generate_static_demo

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert "demo_static" not in config["datasets"]  # the lead adds it to the default run
    definition = dict(config["dataset_defs"]["demo_static"])
    root = tmp_path / "demo_static"
    definition.update(root=str(root), split_files=[str(root / "manifest.csv")])
    generate_static_demo(root, images_per_class=2, progress=False)
    again = generate_static_demo(tmp_path / "again", images_per_class=1, progress=False)
    for name in ("happiness_000", "surprise_000"):  # reproducible, independent of the count
        assert (root / "images" / f"{name}.jpg").read_bytes() == \
            (again.parent / "images" / f"{name}.jpg").read_bytes()
    report = sync_report("demo_static", definition, tmp_path / "results")
    build = report.build
    assert build.labels == ("happiness", "sadness", "neutral", "anger", "surprise")
    table = build.table.to_pandas()
    assert len(table) == 10 and set(table["source_kind"]) == {"image"}
    assert table.groupby("test_fold").size().to_dict() == {1: 5, 2: 5}
    decoded, faces = 0, 0
    for shard in report.shards:
        manifest = tmp_path / "results" / "demo_static" / "manifest" / f"shard-{shard}.parquet"
        out = [tmp_path / "frames" / f"shard-{shard}{s}" for s in (".safetensors", ".parquet",
                                                                    ".failures.parquet")]
        result = decode_shard(manifest, *out, {"size": 112}, progress=False)
        assert (result.failed, result.one_frame, result.static) == (0, 0, result.decoded)
        decoded += result.decoded
        faces += result.decoded - result.no_face
        assert all(v.shape == (1, 112, 112, 3) for v in load_file(str(out[0])).values())
    assert decoded == 10 and faces == 10  # dlib finds the demo face in every still
