"""Readers for the label files of the static (still-image) FER datasets: RAF-DB, AffectNet, FERPlus.

Each image is a clip of one frame (``source_kind: image``); the lines become ``SplitEntry``
records like those of the video datasets, so labels, duplicates, reserved ids and media go
through the same checks (:mod:`dfer.manifests.build`) and every problem is a ``FILE:LINE``.
The forms and their facts, with where they were checked, are in data_manifests/README.md
("Static datasets"):

* **RAF-DB** (basic): ``EmoLabel/list_patition_label.txt``, one ``train_00001.jpg 5`` per line,
  labels 1-7 in the numbering ``rafdb_official``; train / test from the name's prefix. The
  image is ``Image/aligned/<stem>_aligned.jpg`` (the aligned face, taken whole) or else
  ``Image/original/<name>`` (the photo, face detected), under ``root`` or directly in it.
* **AffectNet**: ``training.csv`` (train) and ``validation.csv`` (the test set: the official test
  set is not released), header ``subDirectory_filePath,face_x,face_y,face_width,face_height,
  facial_landmarks,expression,valence,arousal``; ``expression`` in the numbering ``affectnet``
  (8-10 are not expressions and are left out, counted, by the manifest build); the image is
  ``<root>/<subDirectory_filePath>`` and its face box the one the file gives.
* **FERPlus**: ``fer2013new.csv`` (``Usage,Image name,neutral,...,contempt,unknown,NF`` vote
  counts; columns found by name) or the per-set ``FER2013Train/label.csv`` files (no header:
  name, optional ``"(x, y, w, h)"`` box, the ten counts in the numbering ``ferplus_votes``).
  The label is the majority vote of the FERPlus reference code's ``majority`` mode
  (:func:`ferplus_majority`); an image without one, or whose majority is ``unknown`` or ``NF``,
  is left out and counted. ``Training`` trains, ``PrivateTest`` (``FER2013Test/``) is the test
  set, ``PublicTest`` (``FER2013Valid/``) is left out (``ferplus_valid: exclude``) or trains
  (``train``). The 48 x 48 images are face crops, taken whole.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from dfer.manifests.numbering import FORM_AFFECTNET, FORM_FERPLUS, FORM_RAFDB, NUMBERINGS
from dfer.manifests.problems import Exclusions, Location, Problems
from dfer.manifests.readers import (
    HEADER_WORDS,
    ROLE_ASSIGNED,
    WHOLE_IMAGE,
    FaceBox,
    SplitEntry,
    _fields,
    _read_lines,
    check_clip_id,
)

#: Test fold of every static dataset's test images (one fixed train / test split); training
#: images get 0 (every fold's training set), as for FERV39k.
TEST_FOLD = 1

#: FERPlus ``Usage`` values: the folder its images are in, and whether they are the test set.
FERPLUS_SETS = {"Training": ("FER2013Train", False), "PublicTest": ("FER2013Valid", False),
                "PrivateTest": ("FER2013Test", True)}
FERPLUS_VALID = ("exclude", "train")
#: the vote columns of fer2013new.csv, in their order (the numbering ``ferplus_votes``)
FERPLUS_VOTES = (*NUMBERINGS["ferplus_votes"].classes, "unknown", "NF")
_FERPLUS_HEADER = {"neutral": "neutral", "happiness": "happiness", "surprise": "surprise",
                   "sadness": "sadness", "anger": "anger", "disgust": "disgust", "fear": "fear",
                   "contempt": "contempt", "unknown": "unknown", "nf": "NF"}

AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                     "facial_landmarks", "expression", "valence", "arousal")


def _image_id(rel: str) -> str:
    """Clip id of an image path: the path without its extension, folders joined by ``_``."""
    path = rel.replace("\\", "/").strip("/")
    stem = path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path
    return stem.replace("/", "_")


def read_rafdb(files: Sequence[Path], problems: Problems) -> list[SplitEntry]:
    """RAF-DB basic: ``train_00001.jpg 5`` lines; train / test from the name's prefix."""
    entries: list[SplitEntry] = []
    for path in files:
        for number, text in _read_lines(path, problems):
            where = Location(str(path), number)
            fields = _fields(text)
            if number == 1 and fields[0].lower() in HEADER_WORDS:
                continue
            if len(fields) != 2:
                problems.add(where, f"malformed line: expected `train_00001.jpg 5` (image name "
                                    f"and label), got {len(fields)} field(s): {text!r}")
                continue
            name, label = fields
            if "/" in name or "\\" in name:
                problems.add(where, f"malformed line: {name!r} is a path; RAF-DB lines name the "
                                    "image only (train_00001.jpg)")
                continue
            prefix = name.lower()
            if not prefix.startswith(("train", "test")):
                problems.add(where, f"cannot tell whether {name} is a training or a test image: "
                                    "RAF-DB image names start with train_ or test_")
                continue
            clip_id = _image_id(name)
            bad = check_clip_id(clip_id)
            if bad:
                problems.add(where, f"malformed line: {bad}")
                continue
            stem = clip_id
            candidates: tuple[tuple[str, FaceBox | None], ...] = (
                (f"Image/aligned/{stem}_aligned.jpg", WHOLE_IMAGE),
                (f"Image/original/{name}", None),
                (f"{stem}_aligned.jpg", WHOLE_IMAGE),
                (name, None),
            )
            fold = TEST_FOLD if prefix.startswith("test") else 0
            entries.append(SplitEntry(clip_id, label, ROLE_ASSIGNED, fold, where,
                                      candidates[0][0], form=FORM_RAFDB, candidates=candidates))
    return entries


def _affectnet_role(path: Path) -> int | None:
    """Test fold of an AffectNet list file from its name: validation (the test set) -> 1,
    training -> 0; None when the name says neither."""
    low = path.stem.lower()
    if "valid" in low or "test" in low:
        return TEST_FOLD
    if "train" in low:
        return 0
    return None


_BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")


def _affectnet_box(row: Sequence[str], at: Sequence[int] | None) -> FaceBox | None:
    """The face box of an AffectNet row (``face_x, face_y, face_width, face_height``, at the
    positions ``at``), or None when the file or the row gives none or a box of no area (the
    detector then finds the face)."""
    if at is None:
        return None
    try:
        x, y, w, h = (float(row[i] or "nan") for i in at)
    except ValueError:
        return None
    if not (w > 0 and h > 0 and x == x and y == y):  # NaN fails every comparison
        return None
    return (x, y, x + w, y + h)


def _csv_rows(path: Path, problems: Problems) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of a UTF-8 csv file (quoted fields with commas kept whole),
    streamed: AffectNet's training.csv is some 400 MB (68 landmarks a row), and the manifest
    is built at every Snakemake start, so it is never held whole in memory."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for number, line in enumerate(fh, start=1):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                # a plain split where no field is quoted (every AffectNet line: its landmarks
                # are `;`-separated), 3x faster than the csv module on those 1 kB lines
                row = (next(csv.reader([text], skipinitialspace=True)) if '"' in text
                       else text.split(","))
                yield number, row
    except UnicodeDecodeError as exc:
        problems.add(Location(str(path)), f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        problems.add(Location(str(path)), f"cannot read: {exc.strerror or exc}")


def read_affectnet(files: Sequence[Path], problems: Problems) -> list[SplitEntry]:
    """AffectNet ``training.csv`` / ``validation.csv`` rows (header required)."""
    entries: list[SplitEntry] = []
    for path in files:
        fold = _affectnet_role(path)
        if fold is None:
            problems.add(Location(str(path)), "cannot tell whether this is the training or the "
                                              "validation (test) list from its name")
            continue
        header: list[str] | None = None
        at_path = at_expression = 0
        at_box: list[int] | None = None
        for number, row in _csv_rows(path, problems):
            where = Location(str(path), number)
            if header is None:
                header = [f.strip() for f in row]
                missing = [c for c in ("subDirectory_filePath", "expression") if c not in header]
                if missing:
                    problems.add(where, f"header lacks column(s) {', '.join(missing)} (has: "
                                        f"{', '.join(header)}; expected "
                                        f"{','.join(AFFECTNET_COLUMNS)})")
                    break
                at_path, at_expression = header.index("subDirectory_filePath"), header.index("expression")
                at_box = ([header.index(c) for c in _BOX_COLUMNS]
                          if all(c in header for c in _BOX_COLUMNS) else None)
                continue
            if len(row) != len(header):
                problems.add(where, f"malformed line: expected {len(header)} fields, got "
                                    f"{len(row)}")
                continue
            rel = row[at_path].strip().replace("\\", "/")
            if not rel:
                problems.add(where, "malformed line: empty subDirectory_filePath")
                continue
            clip_id = _image_id(rel)
            bad = check_clip_id(clip_id)
            if bad:
                problems.add(where, f"malformed line: {bad}")
                continue
            box = _affectnet_box(row, at_box)
            entries.append(SplitEntry(clip_id, row[at_expression].strip(), ROLE_ASSIGNED, fold,
                                      where, rel, form=FORM_AFFECTNET, candidates=((rel, box),)))
    return entries


def ferplus_majority(votes: Sequence[int]) -> tuple[int | None, str]:
    """``(index, "")`` of the majority class of ten FERPlus vote counts (the columns of
    :data:`FERPLUS_VOTES`), or ``(None, why)``.

    The ``majority`` mode of the FERPlus reference code (``src/ferplus.py``,
    ``_process_data``): a class with a single vote loses it (outlier removal), and the class
    with more than half of the remaining votes is the label. No such class (a tie included),
    or a majority for ``unknown`` or ``NF``: no label.
    """
    if len(votes) != len(FERPLUS_VOTES):
        raise ValueError(f"expected {len(FERPLUS_VOTES)} vote counts, got {len(votes)}")
    counted = [v if v > 1 else 0 for v in votes]
    total = sum(counted)
    top = max(counted)
    if total == 0 or 2 * top <= total:
        return None, "no majority"
    index = counted.index(top)
    if index >= len(NUMBERINGS["ferplus_votes"].classes):
        return None, f"{NUMBERINGS['ferplus_votes'].excluded[index]} majority"
    return index, ""


def _votes(fields: Sequence[str]) -> list[int] | None:
    try:
        votes = [int(v) for v in fields]
    except ValueError:
        return None
    return votes if all(v >= 0 for v in votes) else None


def _ferplus_entry(name: str, usage: str, votes: list[int], folder: str | None, where: Location,
                   valid: str, problems: Problems, excluded: Exclusions) -> SplitEntry | None:
    """One FERPlus image as an entry, or None (excluded and counted, or a problem)."""
    if usage not in FERPLUS_SETS:
        problems.add(where, f"unknown Usage {usage!r} (expected one of {', '.join(FERPLUS_SETS)})")
        return None
    set_folder, is_test = FERPLUS_SETS[usage]
    if not name:
        excluded.add(where, "FERPlus: no image name (a FER2013 image FERPlus ships no file of)")
        return None
    if usage == "PublicTest" and valid == "exclude":
        excluded.add(where, "FERPlus: PublicTest (the validation set; ferplus_valid: exclude)")
        return None
    index, why = ferplus_majority(votes)
    if index is None:
        excluded.add(where, f"FERPlus: {why}")
        return None
    if "/" in name or "\\" in name:
        problems.add(where, f"malformed line: image name {name!r} is a path")
        return None
    clip_id = _image_id(name)
    bad = check_clip_id(clip_id)
    if bad:
        problems.add(where, f"malformed line: {bad}")
        return None
    rel = f"{folder or set_folder}/{name}"
    label = NUMBERINGS["ferplus_votes"].classes[index]
    return SplitEntry(clip_id, label, ROLE_ASSIGNED, TEST_FOLD if is_test else 0, where, rel,
                      form=FORM_FERPLUS, candidates=((rel, WHOLE_IMAGE),))


def read_ferplus(files: Sequence[Path], problems: Problems, excluded: Exclusions,
                 valid: str = "exclude") -> list[SplitEntry]:
    """FERPlus ``fer2013new.csv`` (header) or ``FER2013*/label.csv`` (no header) rows."""
    if valid not in FERPLUS_VALID:
        raise ValueError(f"ferplus_valid must be one of {', '.join(FERPLUS_VALID)}, got {valid!r}")
    entries: list[SplitEntry] = []
    by_folder = {folder: usage for usage, (folder, _) in FERPLUS_SETS.items()}
    for path in files:
        columns: dict[str, int] | None = None
        for number, row in _csv_rows(path, problems):
            where = Location(str(path), number)
            if columns is None and number == 1 and any(f.strip().lower() == "usage" for f in row):
                names = {f.strip().lower(): i for i, f in enumerate(row)}
                missing = [c for c in ("usage", "image name", *_FERPLUS_HEADER) if c not in names]
                if missing:
                    problems.add(where, "header lacks column(s) "
                                        f"{', '.join(_FERPLUS_HEADER.get(m, m) for m in missing)} "
                                        "(fer2013new.csv: Usage,Image name,"
                                        f"{','.join(FERPLUS_VOTES)})")
                    break
                columns = names
                continue
            if columns is not None:  # fer2013new.csv: columns by name
                if len(row) < len(columns):
                    problems.add(where, f"malformed line: expected {len(columns)} fields, got "
                                        f"{len(row)}")
                    continue
                votes = _votes([row[columns[c]] for c in _FERPLUS_HEADER])
                name, usage = row[columns["image name"]].strip(), row[columns["usage"]].strip()
                folder = None
            else:  # FER2013Train/label.csv: name, optional box, the ten counts by position
                usage = by_folder.get(path.parent.name, "")
                if not usage:
                    problems.add(where, f"cannot tell the FERPlus set of {path}: a label.csv "
                                        f"without header lies in {', '.join(by_folder)}")
                    break
                if len(row) not in (11, 12):
                    problems.add(where, f"malformed line: expected the image name, an optional "
                                        f"box and {len(FERPLUS_VOTES)} vote counts, got "
                                        f"{len(row)} field(s)")
                    continue
                votes = _votes(row[-len(FERPLUS_VOTES):])
                name, folder = row[0].strip(), path.parent.name
            if votes is None:
                problems.add(where, "malformed line: vote counts must be whole numbers >= 0")
                continue
            entry = _ferplus_entry(name, usage, votes, folder, where, valid, problems, excluded)
            if entry is not None:
                entries.append(entry)
    return entries
