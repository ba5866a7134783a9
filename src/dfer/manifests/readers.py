"""Readers for the split files of each dataset layout, as users have them on disk.

Every reader turns lines into ``SplitEntry`` records (clip id, raw label field, role, fold,
``FILE:LINE``) and records malformed lines as problems instead of stopping; label mapping,
duplicate detection and media lookup happen afterwards, on all entries together
(``dfer.manifests.build``).

Accepted forms (see data_manifests/README.md for examples):

* ``dfew``: the official ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_K.csv``
  (``video_name,label``; numbers 1-based, or 0-based in S2D's copy), or DFER-CLIP annotation
  text files (``path num_frames label`` per line, 0-based, fold and train/test in the file
  name, e.g. ``DFEW_set_1_test.txt``).
* ``mafw``: the official single-expression split ``set_K/{train,test}.txt`` (``00025.mp4 anger``;
  the ``with_caption`` files' tab-separated caption fields are ignored, and their GBK encoding
  is read), S2D's ``set_K/{train,test}.csv`` (header ``video_name,labels``, 0-based ids), or
  annotation text files as for DFEW.
* ``ferv39k``: ``train_All.csv`` / ``test_All.csv`` (``Scene/Emotion/NNNN Label``, space separated,
  no header), the ``Annotation/{train,test}.csv`` form ``Scene/Emotion/NNNN,id`` (alphabetical
  ids), or annotation text files; test clips get fold 1. Every line's path names its emotion
  (``SplitEntry.folder``), which the manifest build checks the label against.
* ``demo`` / ``generic`` / ``demo_static``: one csv with a header ``clip_id,path,label,test_fold``
  (``fold`` accepted for ``test_fold``); paths relative to the dataset root.
* static datasets, each image a one-frame clip (:mod:`dfer.manifests.static_readers`):
  ``rafdb`` (``EmoLabel/list_patition_label.txt``), ``affectnet7`` / ``affectnet8``
  (``training.csv`` / ``validation.csv``), ``ferplus`` (``fer2013new.csv`` or the per-folder
  ``FER2013*/label.csv``).

Each entry carries its line's *form* (``SplitEntry.form``, the ``FORM_*`` names of
:mod:`dfer.manifests.numbering`): what a numeric label means depends on it, not on the dataset.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dfer.manifests.numbering import (
    FORM_ANNOTATION,
    FORM_DFEW_CSV,
    FORM_FERV39K_CSV,
    FORM_FERV39K_TXT,
    FORM_MAFW_CAPTION,
    FORM_MAFW_TXT,
    FORM_S2D_MAFW_CSV,
    FORM_TABLE,
    folder_emotion,
)
from dfer.manifests.problems import Exclusions, Location, Problems

#: Extensions of video files; other files are not considered when clips are looked up by name.
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".flv", ".mpg",
                              ".mpeg", ".wmv"})

#: First-field values that mark a header line in headerless-by-default split files.
HEADER_WORDS = frozenset({"video_name", "video", "videoname", "clip", "clip_id", "clip_name",
                          "name", "path", "file", "filename", "video_path"})

#: Roles of an entry: in the test set of fold ``fold``; in the training set of fold ``fold``;
#: or with its ``test_fold`` given directly (0 = training clip of every fold).
ROLE_TEST, ROLE_TRAIN, ROLE_ASSIGNED = "test", "train", "assigned"

_SET_RE = re.compile(r"set[_\-]?(\d+)", re.IGNORECASE)
_UNSAFE_ID_RE = re.compile(r"[\s/\\\x00-\x1f]")
#: a comma-separated line: its first field ends at a comma, with no whitespace before it
_COMMA_FIRST = re.compile(r"^[^\s,]+\s*,")

#: Ids a storage format or the file system gives a meaning of their own: safetensors keeps the
#: header entry ``__metadata__`` for its metadata (a clip of that id makes its shard's file
#: unreadable), and ``.`` / ``..`` name a folder itself or its parent (a clip looked up by id
#: would resolve to the dataset root or above it).
RESERVED_IDS = frozenset({"__metadata__", ".", ".."})

#: Longest id in UTF-8 bytes: one file-name component (NAME_MAX on Linux and macOS), since
#: DFEW / MAFW clips are looked up as ``{id}.mp4`` or ``{id}/``.
MAX_ID_BYTES = 255


#: A face box the dataset gives for an image: ``x0, y0, x1, y1`` in the image's pixels (the
#: decode stage then cuts the face there instead of detecting it; ``decode.given_boxes``). A box
#: reaching past the image is cut to it, so :data:`WHOLE_IMAGE` is "the image is the face crop"
#: (RAF-DB's aligned faces, FERPlus's 48 x 48 faces).
FaceBox = tuple[float, float, float, float]
WHOLE_IMAGE: FaceBox = (0.0, 0.0, float("inf"), float("inf"))


@dataclass(frozen=True)
class SplitEntry:
    """One clip as listed on one line of one split file."""

    clip_id: str
    label: str
    role: str
    fold: int
    where: Location
    #: Path of the video / frame folder as the file gives it (relative to the dataset root or
    #: absolute); None when the clip is found by its id under the root.
    path: str | None = None
    #: the line's annotation form (``FORM_*`` of dfer.manifests.numbering): decides what a
    #: numeric label means. Not part of equality: the same clip listed in two forms is one.
    form: str = field(default="", compare=False)
    #: the canonical emotion the line's path names (FERV39k ``Scene/Emotion/NNNN``), or None;
    #: with the path as written, for messages
    folder: str | None = field(default=None, compare=False)
    folder_path: str | None = field(default=None, compare=False)
    #: where the clip's image may be, in order, each with the face box that goes with it
    #: (relative to the root; the first one that exists is the clip's): RAF-DB's aligned face
    #: or its original photo. Empty: ``path`` alone, no box. See ``FaceBox``.
    candidates: tuple[tuple[str, FaceBox | None], ...] = field(default=(), compare=False)



def expand_split_files(paths: Sequence[str], problems: Problems, *, split_names: bool = True) -> list[Path]:
    """Split files named in the config: files as given, directories searched recursively.

    In a directory only ``.csv`` / ``.txt`` files whose path mentions ``train`` or ``test`` are
    taken (so a README next to them is ignored), in sorted order; with ``split_names`` false
    every ``.csv`` / ``.txt`` file there (:func:`expand_static_files`).
    """
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            inside = sorted(
                f for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in (".csv", ".txt")
                and (not split_names or any(w in str(f.relative_to(p)).lower() for w in ("train", "test")))
            )
            if not inside:
                problems.add(Location(str(p)), "directory holds no train/test split files" if split_names
                             else "directory holds no .csv or .txt label files")
            found.extend(inside)
        else:
            problems.add(Location(str(p)), "split file or directory does not exist")
    return found


def split_role(path: Path) -> str | None:
    """``test`` / ``train`` from the file name, else from its two nearest parent folders."""
    for part in (path.stem, path.parent.name, path.parent.parent.name):
        low = part.lower()
        if "test" in low:
            return ROLE_TEST
        if "train" in low:
            return ROLE_TRAIN
    return None


def split_fold(path: Path) -> int | None:
    """Fold number ``K`` from ``set_K`` in the file name, else in its two nearest parents."""
    for part in (path.stem, path.parent.name, path.parent.parent.name):
        m = _SET_RE.search(part)
        if m:
            return int(m.group(1))
    return None


def numbered_clip_id(name: str) -> str:
    """DFEW/MAFW clip id from a file name or number: extension dropped, digits padded to 5."""
    stem = name.strip().replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    suffix = Path(stem).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        stem = stem[: -len(suffix)]
    return stem.zfill(5) if stem.isdigit() else stem


def check_clip_id(clip_id: str) -> str | None:
    """Why ``clip_id`` is unusable as a key and file-name part, or None when it is fine."""
    if not clip_id:
        return "empty clip id"
    if _UNSAFE_ID_RE.search(clip_id):
        return f"clip id {clip_id!r} contains whitespace, a slash or a control character"
    if clip_id in RESERVED_IDS:
        why = ("safetensors keeps it for a shard's metadata" if clip_id == "__metadata__"
               else "it names a folder itself or its parent")
        return f"clip id {clip_id!r} is reserved ({why}); rename the clip"
    size = len(clip_id.encode("utf-8"))
    if size > MAX_ID_BYTES:
        return (f"clip id {clip_id[:40]!r}... is {size} bytes long, more than a file name may "
                f"be ({MAX_ID_BYTES}); shorten it")
    return None


#: Encodings tried in order: UTF-8 (with or without BOM), then GB18030, a superset of the GBK
#: that MAFW's ``with_caption`` files are written in (their Chinese caption column).
SPLIT_FILE_ENCODINGS = ("utf-8-sig", "gb18030")


def read_split_text(path: Path) -> str:
    """A split file's text, decoded as UTF-8 or else as GBK (GB18030); ``ValueError`` naming the
    file when neither decodes it. Split files are small (a few thousand lines)."""
    data = path.read_bytes()
    for encoding in SPLIT_FILE_ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValueError(f"not UTF-8 or GBK text (tried {', '.join(SPLIT_FILE_ENCODINGS)})")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers (BOM and line endings stripped)."""
    for number, line in enumerate(read_split_text(path).splitlines(), start=1):
        text = line.strip()
        if text:
            yield number, text


def _read_lines(path: Path, problems: Problems) -> list[tuple[int, str]]:
    """:func:`_lines` as a list; an undecodable file is a problem of that file (and no lines)."""
    try:
        return list(_lines(path))
    except ValueError as exc:
        problems.add(Location(str(path)), str(exc))
        return []


def _fields(text: str) -> list[str]:
    """Split a headerless split-file line: commas when present, else any whitespace."""
    if "," in text:
        return [f.strip() for f in text.split(",")]
    return text.split()


def _is_annotation_line(fields: list[str]) -> bool:
    return len(fields) == 3 and fields[1].isdigit()


def _kfold_file_fold(path: Path, role: str | None, num_folds: int, problems: Problems) -> int | None:
    where = Location(str(path))
    if role is None:
        problems.add(where, "cannot tell whether this is a train or a test file from its name")
        return None
    fold = split_fold(path)
    if fold is None:
        problems.add(where, "cannot tell the fold from the file name (expected set_K in it)")
        return None
    if not 1 <= fold <= num_folds:
        problems.add(where, f"fold {fold} out of range 1..{num_folds}")
        return None
    return fold


def read_kfold(layout: str, files: Sequence[Path], num_folds: int,
               problems: Problems) -> list[SplitEntry]:
    """DFEW / MAFW: official per-fold files or annotation text files; fold from the file name."""
    entries: list[SplitEntry] = []
    for path in files:
        role = split_role(path)
        fold = _kfold_file_fold(path, role, num_folds, problems)
        if fold is None or role is None:
            continue
        s2d_csv = False
        for number, text in _read_lines(path, problems):
            where = Location(str(path), number)
            # MAFW lines may carry a free-text caption after the label (tab separated in the
            # with_caption files): split on whitespace. S2D's MAFW csv is comma separated.
            comma = _COMMA_FIRST.match(text) is not None
            fields = _fields(text) if layout != "mafw" or comma else text.split()
            if number == 1 and fields[0].lower() in HEADER_WORDS:
                # S2D's MAFW csv says `video_name,labels`; DFEW's official csv `video_name,label`
                s2d_csv = layout == "mafw" and comma
                continue
            if _is_annotation_line(fields):
                name, label, form = fields[0], fields[2], FORM_ANNOTATION
            elif len(fields) == 2 or (layout == "mafw" and len(fields) > 2 and not comma):
                name, label = fields[0], fields[1]
                form = _kfold_form(layout, comma, s2d_csv, "\t" in text)
            else:
                problems.add(where, f"malformed line: expected `clip label` or `path num_frames "
                                    f"label`, got {len(fields)} field(s): {text!r}")
                continue
            clip_id = numbered_clip_id(name)
            bad = check_clip_id(clip_id)
            if bad:
                problems.add(where, f"malformed line: {bad}")
                continue
            entries.append(SplitEntry(clip_id, label, role, fold, where, form=form))
    return entries


def _kfold_form(layout: str, comma: bool, s2d_csv: bool, tabs: bool) -> str:
    """The form of a two-field DFEW / MAFW line (annotation lines are told apart earlier)."""
    if layout != "mafw":
        return FORM_DFEW_CSV
    if comma:
        # S2D's csv (its header names it); a headerless comma file is read the same way
        return FORM_S2D_MAFW_CSV
    return FORM_MAFW_CAPTION if tabs else FORM_MAFW_TXT


def read_ferv39k(files: Sequence[Path], problems: Problems) -> list[SplitEntry]:
    """FERV39k: ``Scene/Emotion/NNNN Label`` lines; train clips fold 0, test clips fold 1."""
    entries: list[SplitEntry] = []
    for path in files:
        role = split_role(path)
        if role is None:
            problems.add(Location(str(path)),
                         "cannot tell whether this is a train or a test file from its name")
            continue
        fold = 1 if role == ROLE_TEST else 0
        for number, text in _read_lines(path, problems):
            where = Location(str(path), number)
            fields = _fields(text)
            if number == 1 and fields[0].lower() in HEADER_WORDS:
                continue
            if _is_annotation_line(fields):
                raw_path, label, form = fields[0], fields[2], FORM_ANNOTATION
            elif len(fields) == 2:
                raw_path, label = fields
                form = FORM_FERV39K_CSV if "," in text else FORM_FERV39K_TXT
            else:
                problems.add(where, f"malformed line: expected `Scene/Emotion/clip Label`, got "
                                    f"{len(fields)} field(s): {text!r}")
                continue
            parts = [p for p in raw_path.replace("\\", "/").split("/") if p not in ("", ".")]
            if len(parts) < 3:
                problems.add(where, f"malformed line: clip path {raw_path!r} is not "
                                    "Scene/Emotion/clip")
                continue
            rel = "/".join(parts[-3:])
            clip_id = rel.replace("/", "_")
            bad = check_clip_id(clip_id)
            if bad:
                problems.add(where, f"malformed line: {bad}")
                continue
            entries.append(SplitEntry(clip_id, label, ROLE_ASSIGNED, fold, where, rel, form=form,
                                      folder=folder_emotion(rel), folder_path=rel))
    return entries


def read_table_csv(files: Sequence[Path], problems: Problems) -> list[SplitEntry]:
    """demo / generic: csv with header ``clip_id,path,label,test_fold`` (or ``fold``)."""
    entries: list[SplitEntry] = []
    for path in files:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            reader.fieldnames = columns
            fold_col = "test_fold" if "test_fold" in columns else "fold"
            missing = [c for c in ("clip_id", "path", "label", fold_col) if c not in columns]
            if missing:
                problems.add(Location(str(path), 1),
                             f"header lacks column(s) {', '.join(missing)} (has: {', '.join(columns)}; "
                             "expected clip_id,path,label,test_fold)")
                continue
            for row in reader:
                where = Location(str(path), reader.line_num)
                if None in row or any(row.get(c) is None for c in columns):
                    problems.add(where, f"malformed line: expected {len(columns)} fields")
                    continue
                values = {k: (v or "").strip() for k, v in row.items()}
                if not any(values.values()):
                    continue
                clip_id = values["clip_id"]
                bad = check_clip_id(clip_id)
                if bad:
                    problems.add(where, f"malformed line: {bad}")
                    continue
                if not values["path"]:
                    problems.add(where, "malformed line: empty path")
                    continue
                try:
                    fold = int(values[fold_col])
                except ValueError:
                    problems.add(where, f"malformed line: {fold_col} {values[fold_col]!r} is not "
                                        "an integer")
                    continue
                entries.append(SplitEntry(clip_id, values["label"], ROLE_ASSIGNED, fold, where,
                                          values["path"], form=FORM_TABLE))
    return entries


#: Every layout a dataset definition may name.
LAYOUTS = ("dfew", "ferv39k", "mafw", "demo", "generic", "rafdb", "affectnet7", "affectnet8",
           "ferplus", "demo_static")


def read_split_files(layout: str, split_files: Sequence[str], num_folds: int | None,
                     problems: Problems, excluded: Exclusions | None = None,
                     options: dict[str, object] | None = None) -> list[SplitEntry]:
    """All entries of a dataset's split files (files or directories) for ``layout``.

    ``excluded`` collects the lines a static dataset's protocol leaves out (FERPlus images
    without a majority, ...); ``options`` are layout keys of the dataset (``ferplus_valid``).
    """
    from dfer.manifests import static_readers

    excluded = excluded if excluded is not None else Exclusions()
    if layout == "rafdb":
        return static_readers.read_rafdb(expand_static_files(split_files, problems), problems)
    if layout in ("affectnet7", "affectnet8"):
        return static_readers.read_affectnet(expand_static_files(split_files, problems), problems)
    if layout == "ferplus":
        valid = str((options or {}).get("ferplus_valid", "exclude"))
        return static_readers.read_ferplus(expand_static_files(split_files, problems), problems,
                                           excluded, valid)
    files = expand_split_files(split_files, problems)
    if layout in ("dfew", "mafw"):
        return read_kfold(layout, files, num_folds or 5, problems)
    if layout == "ferv39k":
        return read_ferv39k(files, problems)
    if layout in ("demo", "generic", "demo_static"):
        return read_table_csv(files, problems)
    raise ValueError(f"unknown dataset layout {layout!r} (known: {', '.join(LAYOUTS)})")


def expand_static_files(paths: Sequence[str], problems: Problems) -> list[Path]:
    """The label files of a static dataset: files as given; in a directory, the ``.csv`` /
    ``.txt`` files at any depth, sorted (their names need not say train or test: RAF-DB's
    one file holds both, AffectNet's are training / validation)."""
    return expand_split_files(paths, problems, split_names=False)
