"""Numeric labels of every public annotation form of DFEW, FERV39k and MAFW (issue 22).

The sample lines are written here from /work/shared/ANNOTATIONS.md (the forms the releases and
the widely used public code ship). Each expected class is read off that table by hand: the
form, not the dataset, decides what a digit means, and ``numbering: auto`` either proves the
numbering from the file or refuses; it never guesses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dfer.manifests import ManifestError, build_manifest, sync_report
from dfer.manifests.labels import DATASET_LABELS
from dfer.manifests.sync import read_manifest


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def clip_folders(root: Path, names: list[str]) -> None:
    """One frame folder (with one image) per clip, as the face crops ship."""
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "00001.jpg").write_bytes(b"x")


def labels_of(build) -> dict[str, str]:
    return {r["clip_id"]: r["label"] for r in build.table.to_pylist()}


def problems_of(definition: dict, name: str = "ds") -> list[str]:
    with pytest.raises(ManifestError) as exc:
        build_manifest(name, definition)
    return exc.value.problems


# --- DFEW -------------------------------------------------------------------------------------

#: clip -> class, for the DFEW samples below (DFEW README: 1 Happy 2 Sad 3 Neutral 4 Angry
#: 5 Surprise 6 Disgust 7 Fear)
DFEW_TRUTH = {"02522": "surprise", "00001": "happiness", "00002": "sadness", "00003": "neutral",
              "00004": "anger", "00005": "disgust", "00006": "fear"}
#: the same clips, as numbered by the official 1-based csv
DFEW_OFFICIAL = {"02522": 5, "00001": 1, "00002": 2, "00003": 3, "00004": 4, "00005": 6, "00006": 7}


def dfew_split(folder: Path, offset: int) -> Path:
    """DFEW's EmoLabel_DataSplit with set_1 only; numbers = official number - offset."""
    test = {k: v - offset for k, v in DFEW_OFFICIAL.items() if k in ("02522", "00001")}
    train = {k: v - offset for k, v in DFEW_OFFICIAL.items() if k not in test}
    write(folder / "test(single-labeled)" / "set_1.csv",
          "video_name,label\n" + "".join(f"{int(k)},{v}\n" for k, v in test.items()))
    write(folder / "train(single-labeled)" / "set_1.csv",
          "video_name,label\n" + "".join(f"{int(k)},{v}\n" for k, v in train.items()))
    return folder


def dfew_def(tmp_path: Path, split: Path, **extra) -> dict:
    root = tmp_path / "clip_224x224"
    clip_folders(root, list(DFEW_TRUTH))
    return {"layout": "dfew", "root": str(root), "num_shards": 1, "num_folds": 1,
            "split_files": [str(split)], **extra}


def test_dfew_official_csv_is_one_based_and_a_seven_in_the_train_file_proves_it(tmp_path):
    # the test file alone (5 and 1) fits both numberings; the train file's 7 decides for both
    split = dfew_split(tmp_path / "EmoLabel_DataSplit", offset=0)
    build = build_manifest("dfew", dfew_def(tmp_path, split))
    assert labels_of(build) == DFEW_TRUTH
    test_file = str(split / "test(single-labeled)" / "set_1.csv")
    train_file = str(split / "train(single-labeled)" / "set_1.csv")
    assert build.numberings[train_file].startswith("dfew_official (not s2d_dfew: line ")
    assert build.numberings[test_file] == "dfew_official (as the other dfew_csv files of dfew)"


def test_s2d_dfew_csv_is_zero_based_and_a_zero_proves_it(tmp_path):
    # S2D's copy of the same files: every number one less; `2522,4` is surprise, not anger
    split = dfew_split(tmp_path / "EmoLabel_DataSplit", offset=1)
    build = build_manifest("dfew", dfew_def(tmp_path, split))
    assert labels_of(build) == DFEW_TRUTH
    assert {v.split(" ")[0] for v in build.numberings.values()} == {"s2d_dfew"}


def test_dfew_csv_without_a_decisive_number_is_refused_naming_file_line_and_candidates(tmp_path):
    split = tmp_path / "EmoLabel_DataSplit"
    f = write(split / "test(single-labeled)" / "set_1.csv", "video_name,label\n2522,5\n1,1\n")
    clip_folders(tmp_path / "r", ["02522", "00001"])
    definition = {"layout": "dfew", "root": str(tmp_path / "r"), "num_shards": 1, "num_folds": 1,
                  "split_files": [str(split)]}
    assert problems_of(definition) == [
        f"{f}:2: cannot tell the numbering of this file's numeric labels (1, 5): they fit "
        "dfew_official (1 happiness, 2 sadness, 3 neutral, 4 anger, 5 surprise, 6 disgust, 7 fear); "
        "s2d_dfew (0 happiness, 1 sadness, 2 neutral, 3 anger, 4 surprise, 5 disgust, 6 fear). "
        "Set dataset_defs.ds.numbering to the one this file uses (data_manifests/README.md lists "
        "each annotation form's numbering)"]
    # ... and named, the numbering is simply used
    build = build_manifest("ds", {**definition, "numbering": "s2d_dfew"})
    assert labels_of(build) == {"02522": "disgust", "00001": "sadness"}


def test_dfer_clip_dfew_txt_is_zero_based(tmp_path):
    ann = tmp_path / "annotation"
    write(ann / "DFEW_set_1_test.txt", "/home/u/DFEW/Clip/clip_224x224/02522 80 4\n"
                                       "/home/u/DFEW/Clip/clip_224x224/00001 61 0\n")
    write(ann / "DFEW_set_1_train.txt", "/home/u/DFEW/Clip/clip_224x224/00006 70 6\n"
                                        "/home/u/DFEW/Clip/clip_224x224/00005 52 5\n")
    build = build_manifest("dfew", dfew_def(tmp_path, ann))
    assert labels_of(build) == {"02522": "surprise", "00001": "happiness", "00006": "fear",
                                "00005": "disgust"}
    # a 7 is outside DFER-CLIP's 0..6 for DFEW: the line's problem, under the form's numbering
    write(ann / "DFEW_set_1_train.txt", "/home/u/DFEW/Clip/clip_224x224/00006 70 7\n")
    f = ann / "DFEW_set_1_train.txt"
    assert problems_of(dfew_def(tmp_path, ann), "dfew") == [
        f"{f}:1: label number 7 is contempt in numbering dfer_clip, not a class of this dataset "
        "(classes: happiness, sadness, neutral, anger, surprise, disgust, fear)"]


def test_the_example_annotation_files_read_as_dfer_clip_writes_them():
    examples = Path(__file__).resolve().parents[1] / "data_manifests" / "examples" / "dfew"
    lines = (examples / "annotation" / "DFEW_set_1_test.txt").read_text().splitlines()
    assert [ln.split()[-1] for ln in lines] == ["0", "1"]  # 0-based, as DFER-CLIP ships them


# --- FERV39k ----------------------------------------------------------------------------------

#: label_index.txt of the release (as S2D ships it): alphabetical, 0-based
FERV_ALPHABETICAL = ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]
FERV_CANONICAL = {"Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happiness",
                  "Neutral": "neutral", "Sad": "sadness", "Surprise": "surprise"}


def ferv_def(tmp_path: Path, files: list[Path], paths: list[str], **extra) -> dict:
    root = tmp_path / "2_ClipsforFaceCrop"
    clip_folders(root, paths)
    return {"layout": "ferv39k", "root": str(root), "num_shards": 1,
            "split_files": [str(f) for f in files], **extra}


def test_ferv39k_path_id_csv_gives_the_labels_its_folders_name(tmp_path):
    train_rows = ["Crime/Angry/0063,0", "Crime/Disgust/0009,1", "War/Fear/0001,2",
                  "Action/Happy/0002,3", "Talk/Neutral/0010,4", "Street/Sad/0011,5",
                  "Party/Surprise/0012,6"]
    train = write(tmp_path / "Annotation" / "train.csv", "\n".join(train_rows) + "\n")
    test = write(tmp_path / "Annotation" / "test.csv", "Crime/Happy/0100,3\n")
    paths = [r.split(",")[0] for r in train_rows] + ["Crime/Happy/0100"]
    build = build_manifest("ferv39k", ferv_def(tmp_path, [train, test], paths))
    got = labels_of(build)
    assert got["Crime_Angry_0063"] == "anger"        # `Crime/Angry/0063,0`
    assert got["Crime_Disgust_0009"] == "disgust"    # `Crime/Disgust/0009,1`
    for path in paths:  # every clip is the class its Emotion folder names
        assert got[path.replace("/", "_")] == FERV_CANONICAL[path.split("/")[1]]
    assert build.numberings[str(train)] == ("ferv39k_alphabetical (the only numbering under which "
                                            "every id names its emotion folder)")


def test_ferv39k_path_id_csv_without_id_zero_is_still_alphabetical(tmp_path):
    # issue 22: with the id-0 rows removed, ids 1-6 were read as DFEW's 1-based numbering and
    # Crime/Disgust/0009 became happiness; the folders leave one numbering
    rows = [f"Crime/{name}/{i:04d},{i}" for i, name in enumerate(FERV_ALPHABETICAL) if i > 0]
    train = write(tmp_path / "Annotation" / "train.csv", "\n".join(rows) + "\n")
    test = write(tmp_path / "Annotation" / "test.csv", "Crime/Sad/0100,5\n")
    paths = [r.split(",")[0] for r in rows] + ["Crime/Sad/0100"]
    build = build_manifest("ferv39k", ferv_def(tmp_path, [train, test], paths))
    assert labels_of(build)["Crime_Disgust_0001"] == "disgust"
    assert labels_of(build)["Crime_Fear_0002"] == "fear"
    assert labels_of(build)["Crime_Sad_0100"] == "sadness"


def test_dfer_clip_ferv39k_txt_counts_happiness_first(tmp_path):
    # DFER-CLIP's FERV39k file: 0-based in DFEW's order, so 0 is happiness here
    train = write(tmp_path / "annotation" / "FERV39K_train.txt",
                  "/data/FERV39k/2_ClipsforFaceCrop/Action/Happy/0001 30 0\n"
                  "/data/FERV39k/2_ClipsforFaceCrop/Crime/Angry/0063 41 3\n")
    test = write(tmp_path / "annotation" / "FERV39K_test.txt",
                 "/data/FERV39k/2_ClipsforFaceCrop/War/Fear/0007 25 6\n")
    build = build_manifest("ferv39k", ferv_def(
        tmp_path, [train, test], ["Action/Happy/0001", "Crime/Angry/0063", "War/Fear/0007"]))
    assert labels_of(build) == {"Action_Happy_0001": "happiness", "Crime_Angry_0063": "anger",
                                "War_Fear_0007": "fear"}
    assert {v.split(" ")[0] for v in build.numberings.values()} == {"dfer_clip"}


def test_ferv39k_names_form(tmp_path):
    train = write(tmp_path / "All_scenes" / "train_All.csv",
                  "Action/Happy/0001 Happy\nCrime/Angry/0063 Angry\n")
    test = write(tmp_path / "All_scenes" / "test_All.csv", "War/Fear/0007 Fear\n")
    build = build_manifest("ferv39k", ferv_def(
        tmp_path, [train, test], ["Action/Happy/0001", "Crime/Angry/0063", "War/Fear/0007"]))
    assert labels_of(build) == {"Action_Happy_0001": "happiness", "Crime_Angry_0063": "anger",
                                "War_Fear_0007": "fear"}
    assert build.numberings == {}  # names only: no numbering was needed


def test_ferv39k_label_contradicting_its_folder_is_an_error_naming_both(tmp_path):
    train = write(tmp_path / "All_scenes" / "train_All.csv",
                  "Crime/Angry/0001,Happy\nCrime/Angry/0002,Angry\n")
    test = write(tmp_path / "All_scenes" / "test_All.csv", "War/Fear/0007 Fear\n")
    definition = ferv_def(tmp_path, [train, test],
                          ["Crime/Angry/0001", "Crime/Angry/0002", "War/Fear/0007"])
    assert problems_of(definition) == [
        f"{train}:1: label 'Happy' (happiness) contradicts the emotion folder Angry (anger) of "
        "its path Crime/Angry/0001; fix the label"]
    # a named numbering that the folders contradict: each contradicting line, with both
    write(train, "Crime/Angry/0001,0\nCrime/Disgust/0002,1\n")
    definition = ferv_def(tmp_path, [train, test],
                          ["Crime/Angry/0001", "Crime/Disgust/0002", "War/Fear/0007"],
                          numbering="dfer_clip")
    assert problems_of(definition) == [
        f"{train}:1: label 0 (happiness in numbering dfer_clip) contradicts the emotion folder "
        "Angry (anger) of its path Crime/Angry/0001; fix the label or the numbering",
        f"{train}:2: label 1 (sadness in numbering dfer_clip) contradicts the emotion folder "
        "Disgust (disgust) of its path Crime/Disgust/0002; fix the label or the numbering"]


def test_ferv39k_ids_no_numbering_explains_are_refused(tmp_path):
    # Angry is 0 and Disgust is 0 too: no numbering reads both as their folders
    train = write(tmp_path / "Annotation" / "train.csv", "Crime/Angry/0001,0\nCrime/Disgust/0002,0\n")
    test = write(tmp_path / "Annotation" / "test.csv", "War/Fear/0007,2\n")
    definition = ferv_def(tmp_path, [train, test],
                          ["Crime/Angry/0001", "Crime/Disgust/0002", "War/Fear/0007"])
    (problem,) = problems_of(definition)
    assert problem.startswith(f"{train}:1: no numbering fits the numeric labels of this file "
                              "(form ferv39k_csv): ferv39k_alphabetical (line 2: 0 would be "
                              "anger, but the path Crime/Disgust/0002 names disgust); ")
    assert "dfer_clip (line 1: 0 would be happiness, but the path Crime/Angry/0001 names anger)" \
        in problem


# --- MAFW -------------------------------------------------------------------------------------

MAFW_IDS = ["00025", "00026", "00027", "00028"]


def mafw_def(tmp_path: Path, folder: Path, **extra) -> dict:
    root = tmp_path / "faces"
    clip_folders(root, MAFW_IDS)
    return {"layout": "mafw", "root": str(root), "num_shards": 1, "num_folds": 1,
            "split_files": [str(folder)], **extra}


def test_mafw_official_names_txt(tmp_path):
    split = tmp_path / "single" / "no_caption"
    write(split / "set_1" / "train.txt", "00025.mp4 anger\n00026.mp4 contempt\n")
    write(split / "set_1" / "test.txt", "00027.mp4 helplessness\n00028.mp4 disappointment\n")
    assert labels_of(build_manifest("mafw", mafw_def(tmp_path, split))) == {
        "00025": "anger", "00026": "contempt", "00027": "helplessness", "00028": "disappointment"}


def test_s2d_mafw_csv_uses_id_to_calss_order(tmp_path):
    # id_to_calss.txt: 0 Anger, 1 Anxiety, 2 contempt, 3 Disappointment, 4 Disgust, 5 Fear,
    # 6 Happiness, 7 Helplessness, 8 Neutral, 9 Sadness, 10 Surprise
    split = tmp_path / "anno" / "single" / "no_caption"
    write(split / "set_1" / "train.csv", "video_name,labels\n00025,0\n00026,1\n")
    write(split / "set_1" / "test.csv", "video_name,labels\n00027,10\n00028,3\n")
    build = build_manifest("mafw", mafw_def(tmp_path, split))
    assert labels_of(build) == {"00025": "anger", "00026": "anxiety", "00027": "surprise",
                                "00028": "disappointment"}
    assert {v.split(" ")[0] for v in build.numberings.values()} == {"s2d_mafw"}


def test_dfer_clip_mafw_txt_puts_dfews_seven_first(tmp_path):
    ann = tmp_path / "annotation"
    write(ann / "MAFW_set_1_train.txt", "/d/MAFW/frames/00025 40 7\n/d/MAFW/frames/00026 40 8\n")
    write(ann / "MAFW_set_1_test.txt", "/d/MAFW/frames/00027 40 0\n/d/MAFW/frames/00028 40 10\n")
    assert labels_of(build_manifest("mafw", mafw_def(tmp_path, ann))) == {
        "00025": "contempt", "00026": "anxiety", "00027": "happiness", "00028": "disappointment"}


def test_mafw_with_caption_is_tab_separated_gbk(tmp_path):
    split = tmp_path / "single" / "with_caption"
    write(split / "set_1" / "train.txt",
          "00025.mp4\tanger\t一个男人在大声喊叫。\tA man shouts, pointing.\n"
          "00026.mp4\tanxiety\t她咬着嘴唇。\tShe bites her lip.\n", encoding="gbk")
    write(split / "set_1" / "test.txt",
          "00027.mp4\tsadness\t他低下头。\tHe lowers his head.\n"
          "00028.mp4\tfear\t她后退。\tShe steps back.\n", encoding="gbk")
    assert labels_of(build_manifest("mafw", mafw_def(tmp_path, split))) == {
        "00025": "anger", "00026": "anxiety", "00027": "sadness", "00028": "fear"}


def test_mafw_numbers_in_the_names_form_are_refused_not_guessed(tmp_path):
    split = tmp_path / "single" / "no_caption"
    f = write(split / "set_1" / "train.txt", "00025.mp4 0\n00026.mp4 3\n")
    write(split / "set_1" / "test.txt", "00027.mp4 anger\n00028.mp4 fear\n")
    (problem,) = problems_of(mafw_def(tmp_path, split))
    assert problem.startswith(f"{f}:1: cannot tell the numbering of this file's numeric labels "
                              "(0, 3): they fit s2d_mafw (0 anger, 1 anxiety, ")
    assert "; dfer_clip (0 happiness, " in problem


def test_mafw_compound_and_misspelt_labels(tmp_path):
    split = tmp_path / "single" / "no_caption"
    f = write(split / "set_1" / "train.txt", "00025.mp4 anger_disgust\n00026.mp4 anxios\n")
    write(split / "set_1" / "test.txt", "00027.mp4 anger\n00028.mp4 fear\n")
    problems = problems_of(mafw_def(tmp_path, split))
    assert problems[0] == (f"{f}:1: compound label 'anger_disgust': MAFW's compound-expression set "
                           "is a separate task; use the single-expression split files "
                           "(single/no_caption)")
    assert problems[1].startswith(f"{f}:2: unknown expression label 'anxios'; classes of this "
                                  "dataset: anger, disgust, fear, happiness, neutral, sadness, "
                                  "surprise, contempt, anxiety, helplessness, disappointment")


def test_a_misspelt_label_lists_the_datasets_own_classes(tmp_path):
    # issue 24, item 10: a 7-class dataset's typo listed MAFW's 11 classes
    ann = tmp_path / "annotation"
    f = write(ann / "DFEW_set_1_test.txt", "/d/00001 61 hapy\n")
    write(ann / "DFEW_set_1_train.txt", "/d/00002 61 sad\n")
    (problem,) = problems_of(dfew_def(tmp_path, ann), "dfew")
    assert problem == (
        f"{f}:1: unknown expression label 'hapy'; classes of this dataset: happiness, sadness, "
        "neutral, anger, surprise, disgust, fear (also accepted: afraid, angry, disgusted, "
        "fearful, happy, joy, sad, surprised)")
    assert "contempt" not in problem and "anxiety" not in problem


# --- generic / former label_base --------------------------------------------------------------


def generic_def(tmp_path: Path, text: str, **extra) -> dict:
    csv = write(tmp_path / "clips.csv", "clip_id,path,label,test_fold\n" + text)
    for line in text.splitlines():
        (tmp_path / "v").mkdir(exist_ok=True)
        (tmp_path / "v" / f"{line.split(',')[0]}.mp4").write_bytes(b"x")
    return {"layout": "generic", "root": str(tmp_path), "num_shards": 1,
            "labels": ["fear", "happy", "sad"], "split_files": [str(csv)], **extra}


def test_generic_numbers_count_the_configured_order(tmp_path):
    rows = "a,v/a.mp4,0,1\nb,v/b.mp4,2,0\n"
    assert labels_of(build_manifest("g", generic_def(tmp_path, rows))) == {"a": "fear", "b": "sadness"}
    rows = "a,v/a.mp4,1,1\nb,v/b.mp4,3,0\n"  # a 3 of three classes proves 1-based
    assert labels_of(build_manifest("g", generic_def(tmp_path, rows))) == {"a": "fear", "b": "sadness"}
    rows = "a,v/a.mp4,1,1\nb,v/b.mp4,2,0\n"  # 1 and 2 fit both: refused, or say which
    (problem,) = problems_of(generic_def(tmp_path, rows))
    assert "they fit order_from_0 (0 fear, 1 happiness, 2 sadness); order_from_1 (1 fear, " in problem
    assert labels_of(build_manifest("g", generic_def(tmp_path, rows, label_base=1))) == \
        {"a": "fear", "b": "happiness"}
    assert labels_of(build_manifest("g", generic_def(tmp_path, rows, numbering="order_from_0"))) == \
        {"a": "happiness", "b": "sadness"}
    with pytest.raises(ValueError, match="set either numbering .dfer_clip. or the former label_base"):
        build_manifest("g", generic_def(tmp_path, rows, label_base=0, numbering="dfer_clip"))
    with pytest.raises(ValueError, match="numbering must be one of auto, dfew_official"):
        build_manifest("g", generic_def(tmp_path, rows, numbering="alphabetical"))


# --- what the manifest records ----------------------------------------------------------------


def test_manifest_metadata_records_numbering_and_label_order(tmp_path):
    split = dfew_split(tmp_path / "EmoLabel_DataSplit", offset=1)
    report = sync_report("dfew", dfew_def(tmp_path, split), tmp_path / "results")
    _, meta = read_manifest(tmp_path / "results" / "dfew" / "manifest" / "manifest.parquet")
    assert meta["label_order"].startswith("dfew: DFEW's official order (happiness, sadness,")
    assert set(meta["numbering"]) == {str(split / "test(single-labeled)" / "set_1.csv"),
                                      str(split / "train(single-labeled)" / "set_1.csv")}
    assert meta["labels"] == list(DATASET_LABELS["dfew"]) == list(report.build.labels)
    (shard,) = (tmp_path / "results" / "dfew" / "manifest").glob("shard-*.parquet")
    _, shard_meta = read_manifest(shard)
    assert "numbering" not in shard_meta  # shard manifests hold only what defines their clips
