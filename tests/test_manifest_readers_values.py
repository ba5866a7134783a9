"""The split-file readers (dfer.manifests.readers) and label mapping (dfer.manifests.labels) on
tiny split files written here: every entry and every problem message is compared in full.

Split files sit two folders below ``tmp_path`` (``tmp_path/a/b``) where their role must not come
from a folder name: pytest names ``tmp_path`` after the test, and ``test`` in it would count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dfer.manifests.labels import (
    DATASET_LABELS,
    canonical_label,
    label_from_token,
    resolve_label_order,
)
from dfer.manifests.problems import Location, Problems
from dfer.manifests.readers import (
    ROLE_ASSIGNED,
    ROLE_TEST,
    ROLE_TRAIN,
    SplitEntry,
    check_clip_id,
    expand_split_files,
    numbered_clip_id,
    read_ferv39k,
    read_kfold,
    read_split_files,
    read_table_csv,
    split_fold,
    split_role,
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def at(path: Path, line: int | None = None) -> Location:
    return Location(str(path), line)


# --- finding split files ------------------------------------------------------------------


def test_expand_split_files_takes_train_test_csv_txt_in_sorted_order(tmp_path: Path) -> None:
    d = tmp_path / "a" / "splits"
    for name in ("set_2/test.csv", "set_1/train.txt", "set_1/TEST.TXT", "README.md", "notes.txt",
                 "train_plot.png", "tests.json"):
        write(d / name, "x")
    (d / "train_dir.csv").mkdir()  # a folder, even with a split-file name, is not a file
    single = write(tmp_path / "a" / "b" / "my_list.csv", "x")  # named explicitly: taken as is
    problems = Problems()
    found = expand_split_files([str(d), str(single)], problems)
    assert found == [d / "set_1" / "TEST.TXT", d / "set_1" / "train.txt", d / "set_2" / "test.csv",
                     single]
    assert problems.messages() == []


def test_expand_split_files_reports_empty_folders_and_missing_paths(tmp_path: Path) -> None:
    empty = tmp_path / "a" / "empty"
    write(empty / "README.md", "x")
    missing = tmp_path / "a" / "nope.csv"
    problems = Problems()
    assert expand_split_files([str(empty), str(missing)], problems) == []
    assert problems.messages() == [f"{empty}: directory holds no train/test split files",
                                   f"{missing}: split file or directory does not exist"]


def test_role_and_fold_come_from_the_name_or_the_two_nearest_folders() -> None:
    assert split_role(Path("x/y/DFEW_set_1_Test.txt")) == ROLE_TEST
    assert split_role(Path("x/y/TrainList.csv")) == ROLE_TRAIN
    assert split_role(Path("x/test(single-labeled)/set_1.csv")) == ROLE_TEST
    assert split_role(Path("train/set_2/list.txt")) == ROLE_TRAIN
    assert split_role(Path("test/a/b/list.txt")) is None  # three folders up: too far
    assert split_role(Path("x/y/train_test.txt")) == ROLE_TEST  # test is looked for first
    assert split_fold(Path("x/y/DFEW_set_3_test.txt")) == 3
    assert split_fold(Path("x/y/SET-12.csv")) == 12
    assert split_fold(Path("x/set4/test.txt")) == 4
    assert split_fold(Path("set_5/y/test.txt")) == 5
    assert split_fold(Path("set_5/x/y/test.txt")) is None


def test_numbered_clip_id() -> None:
    cases = {
        "25": "00025",
        " 25 ": "00025",
        "00025.mp4": "00025",
        "123456.MP4": "123456",
        "clips\\part_1\\00025.avi": "00025",
        "clips/part_1/7.mkv": "00007",
        "frames/00007/": "00007",
        "abc.mp4": "abc",           # not a number: not padded
        "clip.X": "clip.X",         # not a video extension: kept
        "CLIPX": "CLIPX",
        "a/b/c/00012.webm": "00012",
    }
    assert {name: numbered_clip_id(name) for name in cases} == cases


def test_check_clip_id_messages() -> None:
    assert check_clip_id("00025") is None
    assert check_clip_id("War_Fear_0007") is None
    assert check_clip_id("") == "empty clip id"
    for bad in ("a b", "a/b", "a\\b", "a\tb", "a\x01b"):
        assert check_clip_id(bad) == (
            f"clip id {bad!r} contains whitespace, a slash or a control character")


# --- DFEW / MAFW ----------------------------------------------------------------------------


def test_read_kfold_dfew_csv_entries_and_problems(tmp_path: Path) -> None:
    test1 = write(tmp_path / "a" / "test(single-labeled)" / "set_1.csv",
                  "\ufeffVideo_Name,label\r\n"   # 1 header (with a BOM, any case)
                  "1,1\r\n"                      # 2
                  "\r\n"                         # 3 blank: skipped
                  "3\r\n"                        # 4 one field
                  "4,2,9,9\r\n"                  # 5 four fields
                  "a b,3\r\n"                    # 6 bad id
                  ",3\r\n"                       # 7 empty id
                  "video_name,label\r\n"         # 8 a header word after line 1 is a clip
                  "00005.mp4 , 4 \r\n")          # 9
    train1 = write(tmp_path / "a" / "train(single-labeled)" / "set_1.csv",
                   "clips/00010 80 2\n"          # 1 annotation line: path num_frames label
                   "00011 80 happy\n")           # 2 annotation line with a named label
    problems = Problems()
    entries = read_kfold("dfew", [test1, train1], 5, problems)
    assert entries == [
        SplitEntry("00001", "1", ROLE_TEST, 1, at(test1, 2)),
        SplitEntry("video_name", "label", ROLE_TEST, 1, at(test1, 8)),
        SplitEntry("00005", "4", ROLE_TEST, 1, at(test1, 9)),
        SplitEntry("00010", "2", ROLE_TRAIN, 1, at(train1, 1)),
        SplitEntry("00011", "happy", ROLE_TRAIN, 1, at(train1, 2)),
    ]
    expected = "expected `clip label` or `path num_frames label`"
    assert problems.messages() == [
        f"{test1}:4: malformed line: {expected}, got 1 field(s): '3'",
        f"{test1}:5: malformed line: {expected}, got 4 field(s): '4,2,9,9'",
        f"{test1}:6: malformed line: clip id 'a b' contains whitespace, a slash or a control "
        "character",
        f"{test1}:7: malformed line: empty clip id",
    ]


def test_read_kfold_mafw_whitespace_lines_and_captions(tmp_path: Path) -> None:
    f = write(tmp_path / "a" / "set_2" / "test.txt",
              "00025.mp4\tanger\t<br>A man shouts.\n"   # caption words after the label
              "00026.mp4 fear word\n"                   # exactly three fields, label second
              "00027 80 3\n"                            # annotation line
              "00028.mp4\n"                             # one field
              "00029.mp4 sadness\n")
    problems = Problems()
    entries = read_kfold("mafw", [f], 5, problems)
    assert entries == [
        SplitEntry("00025", "anger", ROLE_TEST, 2, at(f, 1)),
        SplitEntry("00026", "fear", ROLE_TEST, 2, at(f, 2)),
        SplitEntry("00027", "3", ROLE_TEST, 2, at(f, 3)),
        SplitEntry("00029", "sadness", ROLE_TEST, 2, at(f, 5)),
    ]
    assert problems.messages() == [
        f"{f}:4: malformed line: expected `clip label` or `path num_frames label`, got 1 "
        "field(s): '00028.mp4'"]
    # in a DFEW file the same three-field line is malformed (only MAFW carries captions)
    g = write(tmp_path / "a" / "set_2" / "train.txt", "00026.mp4 fear word\n00030 2\n")
    problems = Problems()
    assert read_kfold("dfew", [g], 5, problems) == [SplitEntry("00030", "2", ROLE_TRAIN, 2,
                                                               at(g, 2))]
    assert problems.messages() == [
        f"{g}:1: malformed line: expected `clip label` or `path num_frames label`, got 3 "
        "field(s): '00026.mp4 fear word'"]


def test_read_kfold_file_problems_skip_only_that_file(tmp_path: Path) -> None:
    no_role = write(tmp_path / "a" / "b" / "set_1.csv", "1,1\n")
    no_fold = write(tmp_path / "a" / "b" / "test.csv", "2,1\n")
    fold6 = write(tmp_path / "a" / "b" / "set_6_test.csv", "3,1\n")
    fold0 = write(tmp_path / "a" / "b" / "set_0_test.csv", "4,1\n")
    good = write(tmp_path / "a" / "b" / "set_3_train.csv", "5,1\n")
    last = write(tmp_path / "a" / "b" / "set_6_train.csv", "6,1\n")
    problems = Problems()
    entries = read_kfold("dfew", [no_role, no_fold, fold6, fold0, good, last], 6, problems)
    assert entries == [SplitEntry("00003", "1", ROLE_TEST, 6, at(fold6, 1)),
                       SplitEntry("00005", "1", ROLE_TRAIN, 3, at(good, 1)),
                       SplitEntry("00006", "1", ROLE_TRAIN, 6, at(last, 1))]
    assert problems.messages() == [
        f"{no_role}: cannot tell whether this is a train or a test file from its name",
        f"{no_fold}: cannot tell the fold from the file name (expected set_K in it)",
        f"{fold0}: fold 0 out of range 1..6",
    ]
    problems = Problems()
    read_kfold("dfew", [fold6], 5, problems)
    assert problems.messages() == [f"{fold6}: fold 6 out of range 1..5"]


# --- FERV39k -------------------------------------------------------------------------------


def test_read_ferv39k_entries_and_problems(tmp_path: Path) -> None:
    no_role = write(tmp_path / "a" / "b" / "All.csv", "Action/Happy/0001 Happy\n")
    train = write(tmp_path / "a" / "b" / "train_All.csv",
                  "Path Label\n"                              # 1 header
                  "Action/Happy/0001 Happy\n"                 # 2
                  "Action/Happy/0002,Happy\n"                 # 3 comma separated
                  "War\\Fear\\0007 Fear\n"                    # 4 Windows separators
                  "./data/Street/Sad/0003/ Sad\n"             # 5 longer path: last 3 parts
                  "Talk/Angry/0004 80 Angry\n"                # 6 annotation line
                  "Fear/0007 Fear\n"                          # 7 too short a path
                  "Action/Happy/0005\n"                       # 8 one field
                  "War/Fe ar/0008,Fear\n"                     # 9 whitespace in the id
                  "path label\n"                              # 10 header word after line 1
                  "Action/Neutral/0009 Neutral\n")            # 11
    test = write(tmp_path / "a" / "b" / "test_All.csv", "clip Label\nWar/Fear/0010 Fear\n")
    problems = Problems()
    entries = read_ferv39k([no_role, train, test], problems)

    def e(clip_id: str, label: str, fold: int, where: Location, rel: str) -> SplitEntry:
        return SplitEntry(clip_id, label, ROLE_ASSIGNED, fold, where, rel)

    assert entries == [
        e("Action_Happy_0001", "Happy", 0, at(train, 2), "Action/Happy/0001"),
        e("Action_Happy_0002", "Happy", 0, at(train, 3), "Action/Happy/0002"),
        e("War_Fear_0007", "Fear", 0, at(train, 4), "War/Fear/0007"),
        e("Street_Sad_0003", "Sad", 0, at(train, 5), "Street/Sad/0003"),
        e("Talk_Angry_0004", "Angry", 0, at(train, 6), "Talk/Angry/0004"),
        e("Action_Neutral_0009", "Neutral", 0, at(train, 11), "Action/Neutral/0009"),
        e("War_Fear_0010", "Fear", 1, at(test, 2), "War/Fear/0010"),
    ]
    assert problems.messages() == [
        f"{no_role}: cannot tell whether this is a train or a test file from its name",
        f"{train}:7: malformed line: clip path 'Fear/0007' is not Scene/Emotion/clip",
        f"{train}:8: malformed line: expected `Scene/Emotion/clip Label`, got 1 field(s): "
        "'Action/Happy/0005'",
        f"{train}:9: malformed line: clip id 'War_Fe ar_0008' contains whitespace, a slash or a "
        "control character",
        f"{train}:10: malformed line: clip path 'path' is not Scene/Emotion/clip",
    ]


def test_read_ferv39k_dot_and_empty_path_parts_do_not_count(tmp_path: Path) -> None:
    f = write(tmp_path / "a" / "b" / "test.txt", "a//./0001 Happy\na/./b/0002 Sad\n")
    problems = Problems()
    entries = read_ferv39k([f], problems)
    assert entries == [SplitEntry("a_b_0002", "Sad", ROLE_ASSIGNED, 1, at(f, 2), "a/b/0002")]
    assert problems.messages() == [
        f"{f}:1: malformed line: clip path 'a//./0001' is not Scene/Emotion/clip"]


# --- demo / generic csv ----------------------------------------------------------------------


def test_read_table_csv_entries_and_problems(tmp_path: Path) -> None:
    lacking = write(tmp_path / "a" / "lacking.csv", "clip_id,label\nx,happy\n")
    f = write(tmp_path / "a" / "clips.csv",
              "\ufeff clip_id , path ,label,test_fold\n"   # 1 BOM and padded names
              "c1, v/c1.mp4 ,happy, 2\n"                  # 2
              "c2,v/c2.mp4,sad\n"                         # 3 too few fields
              "c3,v/c3.mp4,sad,1,extra\n"                 # 4 too many
              ",,,\n"                                     # 5 empty row: skipped
              "c 4,v/c4.mp4,sad,1\n"                      # 6 bad id
              "c5,,sad,1\n"                               # 7 empty path
              "c6,v/c6.mp4,sad,one\n"                     # 8 fold not an integer
              '"c7","v/c\r\n7.mp4",fear,0\n'             # 9-10 quoted line break, kept
              "c8,v/c8.mp4,,3\n")                         # 11 empty label: the build checks it
    problems = Problems()
    entries = read_table_csv([lacking, f], problems)
    assert entries == [
        SplitEntry("c1", "happy", ROLE_ASSIGNED, 2, at(f, 2), "v/c1.mp4"),
        SplitEntry("c7", "fear", ROLE_ASSIGNED, 0, at(f, 10), "v/c\r\n7.mp4"),
        SplitEntry("c8", "", ROLE_ASSIGNED, 3, at(f, 11), "v/c8.mp4"),
    ]
    assert problems.messages() == [
        f"{lacking}:1: header lacks column(s) path, fold (has: clip_id, label; "
        "expected clip_id,path,label,test_fold)",
        f"{f}:3: malformed line: expected 4 fields",
        f"{f}:4: malformed line: expected 4 fields",
        f"{f}:6: malformed line: clip id 'c 4' contains whitespace, a slash or a control character",
        f"{f}:7: malformed line: empty path",
        f"{f}:8: malformed line: test_fold 'one' is not an integer",
    ]


def test_read_table_csv_fold_column_and_header_problems(tmp_path: Path) -> None:
    f = write(tmp_path / "a" / "m.csv", "clip_id,path,label,fold\nd1,d1.mp4,joy,x\nd2,d2.mp4,joy,0\n")
    partial = write(tmp_path / "a" / "p.csv", "clip_id,path,test_fold\nd3,d3.mp4,1\n")
    problems = Problems()
    entries = read_table_csv([partial, f], problems)
    assert entries == [SplitEntry("d2", "joy", ROLE_ASSIGNED, 0, at(f, 3), "d2.mp4")]
    assert problems.messages() == [
        f"{partial}:1: header lacks column(s) label (has: clip_id, path, test_fold; "
        "expected clip_id,path,label,test_fold)",
        f"{f}:2: malformed line: fold 'x' is not an integer",
    ]


# --- dispatch by layout ----------------------------------------------------------------------


def test_read_split_files_dispatches_on_layout(tmp_path: Path) -> None:
    d = tmp_path / "a" / "dfew"
    write(d / "set_5_test.csv", "1,1\n")
    write(d / "set_6_test.csv", "2,1\n")
    problems = Problems()
    entries = read_split_files("dfew", [str(d)], None, problems)  # 5 folds unless told
    assert entries == [SplitEntry("00001", "1", ROLE_TEST, 5, at(d / "set_5_test.csv", 1))]
    assert problems.messages() == [f"{d / 'set_6_test.csv'}: fold 6 out of range 1..5"]
    m = tmp_path / "a" / "mafw"
    write(m / "set_5_test.txt", "1 anger\n")
    write(m / "set_6_test.txt", "2 fear\n")
    problems = Problems()
    assert [(x.clip_id, x.label, x.fold) for x in read_split_files("mafw", [str(m)], 6, problems)] \
        == [("00001", "anger", 5), ("00002", "fear", 6)]
    assert problems.messages() == []

    fer = write(tmp_path / "a" / "f" / "test_All.csv", "Fear/0007 Fear\nA/B/0001 Fear\n")
    problems = Problems()
    assert read_split_files("ferv39k", [str(fer)], None, problems) == [
        SplitEntry("A_B_0001", "Fear", ROLE_ASSIGNED, 1, at(fer, 2), "A/B/0001")]
    assert problems.messages() == [
        f"{fer}:1: malformed line: clip path 'Fear/0007' is not Scene/Emotion/clip"]

    table = write(tmp_path / "a" / "g" / "c.csv", "clip_id,path,label,fold\nq,q.mp4,joy,1\n")
    for layout in ("demo", "generic"):
        problems = Problems()
        assert read_split_files(layout, [str(table)], None, problems) == [
            SplitEntry("q", "joy", ROLE_ASSIGNED, 1, at(table, 2), "q.mp4")]
    with pytest.raises(ValueError) as exc:
        read_split_files("affwild", [str(table)], None, Problems())
    assert str(exc.value) == ("unknown dataset layout 'affwild' "
                              "(known: dfew, ferv39k, mafw, demo, generic, rafdb, affectnet7, "
                              "affectnet8, ferplus, demo_static)")


# --- labels ---------------------------------------------------------------------------------


def test_canonical_label_unknown_message_lists_every_spelling() -> None:
    with pytest.raises(ValueError) as exc:
        canonical_label("Bored")
    assert str(exc.value) == (
        "unknown expression label 'Bored'; known labels: happiness, sadness, neutral, anger, "
        "surprise, disgust, fear, contempt, anxiety, helplessness, disappointment "
        "(also accepted: afraid, angry, anxious, contemptuous, disappointed, disgusted, fearful, "
        "happy, helpless, joy, sad, surprised)")


def test_label_from_token_numbers_and_names() -> None:
    dfew = DATASET_LABELS["dfew"]
    assert label_from_token(" 3 ", dfew) == "neutral"
    assert label_from_token("+3", dfew) == "neutral"
    assert label_from_token("3", dfew, label_base=0) == "anger"
    assert label_from_token("Joy", dfew) == "happiness"
    with pytest.raises(ValueError) as exc:
        label_from_token("8", dfew)
    assert str(exc.value) == ("label number 8 is out of range (numbering: 1 happiness, 2 sadness, "
                              "3 neutral, 4 anger, 5 surprise, 6 disgust, 7 fear)")
    with pytest.raises(ValueError) as exc:
        label_from_token("7", dfew, label_base=0)
    assert str(exc.value) == ("label number 7 is out of range (numbering: 0 happiness, 1 sadness, "
                              "2 neutral, 3 anger, 4 surprise, 5 disgust, 6 fear)")
    with pytest.raises(ValueError, match=r"^label number -1 is out of range"):
        label_from_token("-1", dfew)
    with pytest.raises(ValueError, match=r"^label number 0 is out of range"):
        label_from_token("0", dfew)
    with pytest.raises(ValueError, match=r"^unknown expression label 'X3'"):
        label_from_token("X3", dfew)
    with pytest.raises(ValueError) as exc:
        label_from_token("Contemptuous", dfew)
    assert str(exc.value) == ("label 'Contemptuous' (contempt) is not a class of this dataset "
                              "(classes: happiness, sadness, neutral, anger, surprise, disgust, "
                              "fear)")


def test_resolve_label_order() -> None:
    assert resolve_label_order("demo", None) == DATASET_LABELS["demo"]
    assert resolve_label_order("demo", ["Happy", "sad", "neutral", "angry", "surprised"]) == \
        DATASET_LABELS["demo"]
    with pytest.raises(ValueError) as exc:
        resolve_label_order("demo", ["sad", "happy", "neutral", "anger", "surprise"])
    assert str(exc.value) == (
        "layout 'demo' has a fixed label order (happiness, sadness, neutral, anger, surprise); "
        "remove `labels` from its dataset definition or use layout `generic`")
    assert resolve_label_order("generic", None) is None
    assert resolve_label_order("generic", ["fear", "Happy"]) == ("fear", "happiness")
    with pytest.raises(ValueError) as exc:
        resolve_label_order("generic", ["happy", "Joy"])
    assert str(exc.value) == "`labels` lists a class twice: ['happy', 'Joy']"
