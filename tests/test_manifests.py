"""Manifest building: labels, each dataset's split-file forms, and validation messages."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from dfer.manifests import (
    DATASET_LABELS,
    MANIFEST_COLUMNS,
    ManifestError,
    build_manifest,
    canonical_label,
)
from dfer.manifests.labels import label_from_token

EXAMPLES = Path(__file__).resolve().parents[1] / "data_manifests" / "examples"


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def frames(folder: Path, n: int = 3) -> Path:
    for i in range(n):
        touch(folder / f"{i:05d}.jpg")
    return folder


def rows(build) -> list[dict]:
    return build.table.to_pylist()


def error_lines(exc: pytest.ExceptionInfo) -> list[str]:
    return exc.value.problems


# --- labels -------------------------------------------------------------------------------


def test_canonical_label_aliases_and_case():
    assert canonical_label("Happy") == "happiness"
    assert canonical_label(" ANGRY ") == "anger"
    assert canonical_label("surprised") == "surprise"
    assert canonical_label("Fearful") == "fear"
    assert canonical_label("anxious") == "anxiety"
    assert canonical_label("disappointment") == "disappointment"


def test_canonical_label_unknown_names_label_and_known_ones():
    with pytest.raises(ValueError) as exc:
        canonical_label("bored")
    msg = str(exc.value)
    assert "'bored'" in msg
    assert "happiness" in msg and "disappointment" in msg and "happy" in msg


def test_dataset_label_orders_are_official():
    assert DATASET_LABELS["dfew"] == ("happiness", "sadness", "neutral", "anger", "surprise",
                                      "disgust", "fear")
    assert DATASET_LABELS["mafw"][:7] == ("anger", "disgust", "fear", "happiness", "neutral",
                                          "sadness", "surprise")
    assert DATASET_LABELS["mafw"][7:] == ("contempt", "anxiety", "helplessness", "disappointment")
    assert len(DATASET_LABELS["ferv39k"]) == 7
    assert DATASET_LABELS["demo"] == ("happiness", "sadness", "neutral", "anger", "surprise")


def test_numeric_labels_use_official_numbering():
    assert label_from_token("1", DATASET_LABELS["dfew"]) == "happiness"
    assert label_from_token("7", DATASET_LABELS["dfew"]) == "fear"
    assert label_from_token("1", DATASET_LABELS["mafw"]) == "anger"
    assert label_from_token("11", DATASET_LABELS["mafw"]) == "disappointment"
    assert label_from_token("0", DATASET_LABELS["dfew"], label_base=0) == "happiness"
    with pytest.raises(ValueError, match="label number 8 is out of range"):
        label_from_token("8", DATASET_LABELS["dfew"])
    with pytest.raises(ValueError, match="not a class of this dataset"):
        label_from_token("contempt", DATASET_LABELS["dfew"])


# --- each layout from the example files -------------------------------------------------------


def test_dfew_official_csv(tmp_path):
    root = tmp_path / "Clip" / "original"
    for i in range(1, 10):  # videos nested in part folders, as unzipped
        touch(root / "part_1" / f"{i:05d}.mp4")
    touch(root / "part_2" / "00010.mp4")
    build = build_manifest("dfew", {"layout": "dfew", "root": str(root), "num_shards": 4,
                                    "split_files": [str(EXAMPLES / "dfew" / "EmoLabel_DataSplit")]})
    table = rows(build)
    assert build.table.column_names == list(MANIFEST_COLUMNS)
    assert [r["clip_id"] for r in table] == [f"{i:05d}" for i in range(1, 11)]
    by_id = {r["clip_id"]: r for r in table}
    # set_k's test csv lists clips 2k-1 and 2k
    assert [by_id[f"{i:05d}"]["test_fold"] for i in range(1, 11)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # numeric labels 1..7 through the DFEW numbering; 8 -> 1 happy
    assert by_id["00001"]["label"] == "happiness" and by_id["00001"]["label_idx"] == 0
    assert by_id["00004"]["label"] == "anger" and by_id["00004"]["label_idx"] == 3
    assert by_id["00007"]["label"] == "fear" and by_id["00007"]["label_idx"] == 6
    assert by_id["00010"]["path"] == str(root / "part_2" / "00010.mp4")
    assert {r["source_kind"] for r in table} == {"video"}
    assert by_id["00001"]["size_bytes"] == 1
    assert build.num_folds == 5 and build.labels == DATASET_LABELS["dfew"]


def test_dfew_frame_folders_and_annotation_txt(tmp_path):
    root = tmp_path / "clip_224x224"
    for i in range(1, 11):
        frames(root / f"{i:05d}")
    # the example holds set_1's files only: one fold, which num_folds must say (issue 17)
    build = build_manifest("dfew", {"layout": "dfew", "root": str(root), "num_shards": 2,
                                    "num_folds": 1,
                                    "split_files": [str(EXAMPLES / "dfew" / "annotation")]})
    by_id = {r["clip_id"]: r for r in rows(build)}
    assert len(by_id) == 10
    assert by_id["00001"]["source_kind"] == "frames"
    assert by_id["00001"]["path"] == str(root / "00001")
    assert by_id["00001"]["test_fold"] == 1 and by_id["00003"]["test_fold"] == 0
    assert by_id["00002"]["label"] == "sadness"


def test_mafw_official_txt_frames(tmp_path):
    root = tmp_path / "frames"
    for i in range(1, 12):
        frames(root / f"{i:05d}")
    split = tmp_path / "split"
    shutil.copytree(EXAMPLES / "mafw" / "single", split)
    build = build_manifest("mafw", {"layout": "mafw", "root": str(root), "num_shards": 3,
                                    "split_files": [str(split / "no_caption")]})
    by_id = {r["clip_id"]: r for r in rows(build)}
    assert len(by_id) == 11
    assert by_id["00001"]["label"] == "anger" and by_id["00001"]["label_idx"] == 0
    assert by_id["00011"]["label"] == "disappointment" and by_id["00011"]["label_idx"] == 10
    assert by_id["00001"]["test_fold"] == 1 and by_id["00002"]["test_fold"] == 2
    assert by_id["00006"]["test_fold"] == 1
    assert build.labels == DATASET_LABELS["mafw"]


def test_mafw_caption_fields_are_ignored(tmp_path):
    touch(tmp_path / "clips" / "00025.mp4")
    split = tmp_path / "set_1" / "test.txt"
    touch(split, b"00025.mp4\tanger\t<br>A man shouts. The deep frown, a raised lip.\n")
    build = build_manifest("mafw", {"layout": "mafw", "root": str(tmp_path / "clips"),
                                    "num_shards": 1, "num_folds": 1, "split_files": [str(split)]})
    assert rows(build)[0]["label"] == "anger" and rows(build)[0]["test_fold"] == 1


def test_ferv39k_train_test_names(tmp_path):
    root = tmp_path / "2_ClipsforFaceCrop"
    split = EXAMPLES / "ferv39k" / "4_setups" / "All_scenes"
    for f in ("train_All.csv", "test_All.csv"):
        for line in (split / f).read_text().splitlines():
            frames(root / line.split()[0])
    build = build_manifest("ferv39k", {"layout": "ferv39k", "root": str(root), "num_shards": 2,
                                       "split_files": [str(split / "train_All.csv"),
                                                       str(split / "test_All.csv")]})
    by_id = {r["clip_id"]: r for r in rows(build)}
    assert len(by_id) == 9 and build.num_folds == 1
    assert by_id["Action_Happy_0001"]["test_fold"] == 0
    assert by_id["War_Fear_0007"]["test_fold"] == 1
    assert by_id["War_Fear_0007"]["label"] == "fear"
    assert by_id["Interview_Angry_0004"]["label"] == "anger"
    assert by_id["War_Fear_0007"]["path"] == str(root / "War/Fear/0007")
    assert by_id["War_Fear_0007"]["source_kind"] == "frames"


def test_demo_and_generic_csv(tmp_path):
    for i in range(10):
        touch(tmp_path / "demo" / "videos" / f"demo_{i:03d}.mp4")
    demo = build_manifest("demo", {"layout": "demo", "root": str(tmp_path / "demo"),
                                   "num_shards": 4,
                                   "split_files": [str(EXAMPLES / "demo" / "manifest.csv")]})
    by_id = {r["clip_id"]: r for r in rows(demo)}
    assert len(by_id) == 10 and demo.num_folds == 3
    assert by_id["demo_009"]["test_fold"] == 0 and by_id["demo_002"]["test_fold"] == 3
    assert by_id["demo_004"]["label"] == "surprise" and by_id["demo_004"]["label_idx"] == 4

    g = tmp_path / "gen"
    for p in ("clips/interview_01.mp4", "clips/interview_02.mp4", "clips/lab_01.avi"):
        touch(g / p)
    frames(g / "frames" / "street_01")
    frames(g / "frames" / "street_02")
    generic = build_manifest("mine", {"layout": "generic", "root": str(g), "num_shards": 2,
                                      "split_files": [str(EXAMPLES / "generic" / "clips.csv")]})
    assert generic.labels == ("happiness", "sadness", "surprise", "fear", "contempt")
    by_id = {r["clip_id"]: r for r in rows(generic)}
    assert by_id["street_01"]["source_kind"] == "frames" and by_id["lab_01"]["test_fold"] == 0
    configured = build_manifest("mine", {"layout": "generic", "root": str(g), "num_shards": 2,
                                         "labels": ["fear", "happy", "sad", "surprise", "contempt"],
                                         "split_files": [str(EXAMPLES / "generic" / "clips.csv")]})
    assert configured.labels[0] == "fear"
    assert {r["clip_id"]: r["label_idx"] for r in rows(configured)}["interview_01"] == 1


def test_fixed_layout_rejects_configured_labels(tmp_path):
    with pytest.raises(ValueError, match="fixed label order"):
        build_manifest("demo", {"layout": "demo", "root": str(tmp_path), "num_shards": 1,
                                "labels": ["anger", "happiness"], "split_files": ["x.csv"]})


# --- validation: every problem, with FILE:LINE ----------------------------------------------


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_every_bad_line_kind_is_reported_with_file_and_line(tmp_path):
    root = tmp_path / "root"
    for c in ("a", "b", "c", "d"):
        touch(root / f"{c}.mp4")
    csv = write(tmp_path / "clips.csv",
                "clip_id,path,label,test_fold\n"      # 1
                "a,a.mp4,happy,1\n"                   # 2 fine
                "b,b.mp4,bored,1\n"                   # 3 unknown label
                "a,a.mp4,sad,2\n"                     # 4 duplicate of line 2
                "c,c.mp4,sad,7\n"                     # 5 fold out of range
                "d,d.mp4,sad\n"                       # 6 malformed (too few fields)
                "e,e.mp4,sad,1\n"                     # 7 missing video
                "f,f.mp4,sad,one\n")                  # 8 malformed fold
    with pytest.raises(ManifestError) as exc:
        build_manifest("g", {"layout": "generic", "root": str(root), "num_shards": 1,
                             "num_folds": 2, "split_files": [csv]})
    problems = error_lines(exc)
    assert f"{csv}:3: unknown expression label 'bored'" in "\n".join(problems)
    assert f"{csv}:4: duplicate clip id a (also at {csv}:2)" in problems
    assert f"{csv}:5: test_fold 7 out of range 0..2" in problems
    assert any(p.startswith(f"{csv}:6: malformed line") for p in problems)
    assert any(p.startswith(f"{csv}:8: malformed line: test_fold 'one'") for p in problems)
    assert len(problems) == 5  # media is checked once the split files are clean
    # ... and once they are, missing media is reported at its line
    write(tmp_path / "clips.csv", "clip_id,path,label,test_fold\na,a.mp4,happy,1\ne,e.mp4,sad,1\n")
    with pytest.raises(ManifestError) as exc:
        build_manifest("g", {"layout": "generic", "root": str(root), "num_shards": 1,
                             "split_files": [csv]})
    assert error_lines(exc) == [f"{csv}:3: missing video/frame folder {root / 'e.mp4'}"]
    assert "1 problem(s) in the split files of dataset 'g'" in str(exc.value)


def test_dfew_bad_lines(tmp_path):
    root = tmp_path / "root"
    for i in (1, 2, 3):
        touch(root / f"{i:05d}.mp4")
    split = tmp_path / "EmoLabel_DataSplit"
    test1 = write(split / "test(single-labeled)" / "set_1.csv", "video_name,label\n1,1\n2,9\n")
    test2 = write(split / "test(single-labeled)" / "set_2.csv", "video_name,label\n1,1\n3\n")
    train1 = write(split / "train(single-labeled)" / "set_1.csv", "video_name,label\n3,2\n1,4\n")
    bad_fold = write(split / "test(single-labeled)" / "set_6.csv", "video_name,label\n3,2\n")
    with pytest.raises(ManifestError) as exc:
        build_manifest("dfew", {"layout": "dfew", "root": str(root), "num_shards": 1,
                                "numbering": "dfew_official", "split_files": [str(split)]})
    problems = error_lines(exc)
    assert any(p.startswith(f"{test1}:3: label number 9 is out of range") for p in problems)
    assert f"{test2}:2: duplicate clip id 00001 (also at {test1}:2)" in problems
    assert any(p.startswith(f"{test2}:3: malformed line") for p in problems)
    assert f"{train1}:3: clip 00001 is in both the training and the test set of fold 1 " \
           f"(also at {test1}:2)" in problems
    assert f"{bad_fold}: fold 6 out of range 1..5" in problems


def test_reserved_and_unsafe_ids_are_refused_at_their_line(tmp_path):
    """Ids a storage format or the file system reserves stop the manifest, each at its line.

    ``__metadata__`` as a safetensors key makes the whole frames shard unreadable (every later
    stage failed on it with ``duplicate field __metadata__``); ``.`` and ``..`` name a folder
    itself or its parent; an id longer than a file name (255 bytes) cannot be looked up.
    """
    root = tmp_path / "root"
    touch(root / "a.mp4")
    long_id = "é" * 128  # 256 bytes in UTF-8, 128 characters
    csv = write(tmp_path / "clips.csv",
                "clip_id,path,label,test_fold\n"      # 1
                "a,a.mp4,happy,1\n"                   # 2 fine
                "__metadata__,a.mp4,happy,1\n"        # 3 safetensors' header key
                ".,a.mp4,happy,1\n"                   # 4 the folder itself
                "..,a.mp4,happy,1\n"                  # 5 its parent
                f"{long_id},a.mp4,happy,1\n"          # 6 longer than a file name
                f"{'x' * 255},a.mp4,happy,1\n")        # 7 255 bytes: still fine
    with pytest.raises(ManifestError) as exc:
        build_manifest("g", {"layout": "generic", "root": str(root), "num_shards": 1,
                             "split_files": [csv]})
    problems = error_lines(exc)
    assert problems[:3] == [
        f"{csv}:3: malformed line: clip id '__metadata__' is reserved (safetensors keeps it for "
        "a shard's metadata); rename the clip",
        f"{csv}:4: malformed line: clip id '.' is reserved (it names a folder itself or its "
        "parent); rename the clip",
        f"{csv}:5: malformed line: clip id '..' is reserved (it names a folder itself or its "
        "parent); rename the clip"]
    assert problems[3].startswith(f"{csv}:6: malformed line: clip id '{'é' * 40}'... is 256 "
                                  "bytes long, more than a file name may be (255)")
    assert len(problems) == 4
    # DFEW / MAFW ids come from file names: `__metadata__.mp4` is the same reserved id
    touch(root / "00001.mp4")
    test1 = write(tmp_path / "dfew" / "test" / "set_1.csv",
                  "video_name,label\n1,1\n__metadata__.mp4,2\n")
    with pytest.raises(ManifestError) as exc:
        build_manifest("dfew", {"layout": "dfew", "root": str(root), "num_shards": 1,
                                "num_folds": 1, "split_files": [test1],
                                "numbering": "dfew_official"})  # labels 1, 2 alone prove none
    assert error_lines(exc) == [f"{test1}:3: malformed line: clip id '__metadata__' is reserved "
                                "(safetensors keeps it for a shard's metadata); rename the clip"]


def test_reserved_key_is_refused_by_the_safetensors_writer(tmp_path):
    """A shard manifest written by hand bypasses the manifest check: the writer refuses the key
    instead of writing a shard that no reader can open."""
    import numpy as np

    from dfer.core.artifacts import write_safetensors

    with pytest.raises(ValueError, match="'__metadata__' is reserved by safetensors"):
        write_safetensors(tmp_path / "s.safetensors",
                          {"__metadata__": np.zeros(2, np.uint8), "a": np.ones(2, np.uint8)}, {})
    assert list(tmp_path.iterdir()) == []


def test_label_disagreement_between_train_and_test(tmp_path):
    touch(tmp_path / "root" / "00001.mp4")
    test1 = write(tmp_path / "s" / "test" / "set_1.csv", "video_name,label\n1,1\n")
    train2 = write(tmp_path / "s" / "train" / "set_2.csv", "video_name,label\n1,2\n")
    with pytest.raises(ManifestError) as exc:
        build_manifest("dfew", {"layout": "dfew", "root": str(tmp_path / "root"), "num_shards": 1,
                                "numbering": "dfew_official", "split_files": [test1, train2]})
    assert error_lines(exc) == [f"{train2}:2: label sadness of clip 00001 disagrees with "
                                f"happiness at {test1}:2"]


def test_missing_split_file_and_ambiguous_media(tmp_path):
    touch(tmp_path / "root" / "a" / "00001.mp4")
    frames(tmp_path / "root" / "b" / "00001")
    test1 = write(tmp_path / "test" / "set_1.csv", "video_name,label\n1,1\n")
    with pytest.raises(ManifestError) as exc:
        build_manifest("dfew", {"layout": "dfew", "root": str(tmp_path / "root"), "num_shards": 1,
                                "num_folds": 1, "numbering": "dfew_official",
                                "split_files": [test1]})
    (problem,) = error_lines(exc)
    assert problem.startswith(f"{test1}:2: clip 00001 found more than once under")
    with pytest.raises(ManifestError, match="nope.csv: split file or directory does not exist"):
        build_manifest("dfew", {"layout": "dfew", "root": str(tmp_path), "num_shards": 1,
                                "split_files": [str(tmp_path / "nope.csv")]})


def test_on_missing_skip_drops_clip_with_warning(tmp_path, caplog):
    root = tmp_path / "root"
    touch(root / "a.mp4")
    csv = write(tmp_path / "m.csv", "clip_id,path,label,fold\na,a.mp4,happy,1\nb,b.mp4,sad,2\n")
    with caplog.at_level(logging.WARNING):
        build = build_manifest("demo", {"layout": "demo", "root": str(root), "num_shards": 2,
                                        "on_missing": "skip", "split_files": [csv]})
    assert [r["clip_id"] for r in rows(build)] == ["a"]
    assert [s.clip_id for s in build.skipped] == ["b"]
    assert build.skipped[0].where == f"{csv}:3"
    assert "skipped 1 clip(s)" in caplog.text and "b.mp4" in caplog.text
    assert build.num_folds == 2  # folds count from the split file, not only kept clips


def test_frames_stat_deep_sums_images(tmp_path):
    folder = tmp_path / "root" / "c1"
    touch(folder / "1.jpg", b"abc")
    touch(folder / "2.png", b"de")
    touch(folder / "notes.txt", b"ignored")
    touch(tmp_path / "root" / "c2" / "readme.txt")
    csv = write(tmp_path / "m.csv", "clip_id,path,label,fold\nc1,c1,happy,1\n")
    build = build_manifest("g", {"layout": "generic", "root": str(tmp_path / "root"),
                                 "num_shards": 1, "frames_stat": "deep", "split_files": [csv]})
    assert rows(build)[0]["size_bytes"] == 5
    write(tmp_path / "m.csv", "clip_id,path,label,fold\nc2,c2,happy,1\n")
    with pytest.raises(ManifestError, match="holds no images"):
        build_manifest("g", {"layout": "generic", "root": str(tmp_path / "root"),
                             "num_shards": 1, "frames_stat": "deep", "split_files": [csv]})
