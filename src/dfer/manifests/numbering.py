"""Numeric class labels: the named numberings of the public annotation forms, and ``auto``.

The same digit means different classes in different annotation files of one dataset: FERV39k's
``Crime/Angry/0063,0`` (the ``path,id`` csv, alphabetical ids as in the release's
``label_index.txt``) is *anger*, while ``0`` in DFER-CLIP's FERV39k annotation file is
*happiness*; DFEW's official split csv counts from 1, S2D's copy of it from 0. Reading every
numeric label through one per-dataset numbering mislabels six of seven classes without a word
(issue 22). So the *form* of a file, not the dataset, decides the numbering, and every
numbering has a name (:data:`NUMBERINGS`; docs in data_manifests/README.md):

* a dataset sets ``numbering: <name>`` to read every numeric label of its split files that way;
* ``numbering: auto`` (the default) decides per file, from the file's form (what the reader saw:
  ``video_name,label`` csv, ``path num_frames label`` txt, ``Scene/Emotion/NNNN,id`` csv, ...)
  and from evidence in the file: a number outside a numbering's range rules it out (a ``0``
  proves 0-based, a ``7`` in DFEW's csv proves 1-based), and where a path names the emotion
  (FERV39k's ``Scene/Emotion/NNNN``) only numberings under which *every* id agrees with its
  folder remain. One numbering left (or several that give the same classes): taken. None, or
  several that disagree: taken from the other files of the same form when those were decided,
  else refused with a problem naming the file, its first numeric line and the candidates. It
  never guesses.

``label_base: 0|1`` (the former key) still works: it is the numbering ``order_from_0`` /
``order_from_1`` (numbers count the dataset's own class order, dfer.manifests.labels).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dfer.manifests.labels import SEVEN, canonical_label
from dfer.manifests.problems import Location, Problems

AUTO = "auto"

#: Forms of a split-file line, as the readers name them (``SplitEntry.form``).
FORM_DFEW_CSV = "dfew_csv"  # official DFEW `video_name,label` csv (or S2D's copy of it)
FORM_ANNOTATION = "annotation_txt"  # DFER-CLIP `<frame_dir> <num_frames> <label>`
FORM_FERV39K_CSV = "ferv39k_csv"  # FERV39k `Scene/Emotion/NNNN,<id or name>` (comma)
FORM_FERV39K_TXT = "ferv39k_txt"  # FERV39k `Scene/Emotion/NNNN <name>` (whitespace)
FORM_MAFW_TXT = "mafw_txt"  # MAFW official `00025.mp4 anger` (names)
FORM_MAFW_CAPTION = "mafw_caption_txt"  # MAFW with_caption: tab separated, GBK
FORM_S2D_MAFW_CSV = "s2d_mafw_csv"  # S2D's MAFW csv `video_name,labels` (header), 0-based
FORM_TABLE = "table_csv"  # demo / generic `clip_id,path,label,test_fold`


@dataclass(frozen=True)
class Numbering:
    """What each number of a numeric label field means: ``classes[number - base]``."""

    name: str
    base: int
    classes: tuple[str, ...]
    #: which files use it (for messages and docs)
    used_by: str

    def label(self, number: int) -> str | None:
        """The class ``number`` stands for, or None when it is outside this numbering."""
        index = number - self.base
        return self.classes[index] if 0 <= index < len(self.classes) else None

    def describe(self) -> str:
        """``1 happiness, 2 sadness, ...``: the numbering spelled out for a message."""
        return ", ".join(f"{i + self.base} {c}" for i, c in enumerate(self.classes))


_ELEVEN_DFER_CLIP = (*SEVEN, "contempt", "anxiety", "helplessness", "disappointment")

#: Every named numbering of a public annotation form (the sources: /work/shared/ANNOTATIONS.md,
#: data_manifests/README.md).
NUMBERINGS: dict[str, Numbering] = {n.name: n for n in (
    Numbering("dfew_official", 1, SEVEN,
              "DFEW release EmoLabel_DataSplit/{train,test}(single-labeled)/set_K.csv"),
    Numbering("s2d_dfew", 0, SEVEN, "S2D's copy of DFEW's set_K.csv (official numbers minus 1)"),
    Numbering("dfer_clip", 0, _ELEVEN_DFER_CLIP,
              "DFER-CLIP annotation/{DFEW,FERV39K,MAFW}_*.txt (`path num_frames label`)"),
    Numbering("ferv39k_alphabetical", 0,
              ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"),
              "FERV39k Annotation/{train,test}.csv (`path,id`) and label_index.txt"),
    Numbering("s2d_mafw", 0,
              ("anger", "anxiety", "contempt", "disappointment", "disgust", "fear", "happiness",
               "helplessness", "neutral", "sadness", "surprise"),
              "S2D's MAFW anno/single/no_caption/set_K/*.csv (`video_name,labels`), "
              "id_to_calss.txt"),
)}

#: Numberings that count the dataset's own class order (dfer.manifests.labels), from 0 or 1:
#: the former ``label_base`` key, and the natural choice of a generic dataset.
ORDER_NUMBERINGS = {"order_from_0": 0, "order_from_1": 1}

#: Per form: the numberings ``auto`` considers (first = preferred name when several give the
#: same classes). Where every line's path names its emotion, every numbering is considered.
FORM_CANDIDATES: dict[str, tuple[str, ...]] = {
    FORM_DFEW_CSV: ("dfew_official", "s2d_dfew"),
    FORM_ANNOTATION: ("dfer_clip",),
    FORM_FERV39K_CSV: ("ferv39k_alphabetical",),
    FORM_FERV39K_TXT: ("ferv39k_alphabetical", "dfer_clip", "dfew_official"),
    FORM_MAFW_TXT: ("s2d_mafw", "dfer_clip"),
    FORM_MAFW_CAPTION: ("s2d_mafw", "dfer_clip"),
    FORM_S2D_MAFW_CSV: ("s2d_mafw",),
    FORM_TABLE: ("order_from_0", "order_from_1"),
}


def numbering_names() -> list[str]:
    """Every value the ``numbering`` key accepts."""
    return [AUTO, *NUMBERINGS, *ORDER_NUMBERINGS]


def get_numbering(name: str, order: Sequence[str]) -> Numbering:
    """The numbering called ``name``; the ``order_from_*`` ones count ``order``."""
    if name in NUMBERINGS:
        return NUMBERINGS[name]
    if name in ORDER_NUMBERINGS:
        return Numbering(name, ORDER_NUMBERINGS[name], tuple(order),
                         "the dataset's own class order (former label_base)")
    raise ValueError(f"unknown numbering {name!r}; known: {', '.join(numbering_names())}")


def numbering_setting(definition: Mapping[str, object], dataset: str) -> str:
    """The dataset's ``numbering`` value, with the former ``label_base`` mapped onto it.

    ``label_base`` and a ``numbering`` other than ``auto`` together are an error: two keys
    that could disagree about the same numbers.
    """
    numbering = str(definition.get("numbering", AUTO))
    base = definition.get("label_base")
    if numbering not in numbering_names():
        raise ValueError(f"dataset {dataset!r}: numbering must be one of "
                         f"{', '.join(numbering_names())}, got {numbering!r}")
    if base is None:
        return numbering
    if int(base) not in (0, 1):  # type: ignore[call-overload]
        raise ValueError(f"dataset {dataset!r}: label_base must be 0 or 1, got {base!r}")
    if numbering != AUTO:
        raise ValueError(f"dataset {dataset!r}: set either numbering ({numbering}) or the former "
                         f"label_base ({base}), not both")
    return f"order_from_{int(base)}"  # type: ignore[call-overload]


def parse_number(text: str) -> int | None:
    """The integer of a numeric label field (``3``, ``+3``, `` 3 ``, ``-1``), else None."""
    t = str(text).strip()
    return int(t) if t.lstrip("+-").isdigit() else None


@dataclass(frozen=True)
class NumberedLine:
    """One numeric label of a split file, with the emotion its path names (if any)."""

    where: Location
    number: int
    folder: str | None = None  # canonical emotion named by the path (FERV39k Scene/Emotion/)
    folder_text: str | None = None  # the path as written, for messages


@dataclass
class Decision:
    """How the numeric labels of one (file, form) group are read."""

    numbering: Numbering | None
    reason: str


def _misfit(numbering: Numbering, lines: Sequence[NumberedLine], classes: set[str]) -> str | None:
    """Why ``numbering`` cannot be the one of ``lines`` (first offending line), or None."""
    for line in lines:
        label = numbering.label(line.number)
        if label is None:
            return f"line {line.where.line}: {line.number} is outside it"
        if label not in classes:
            return f"line {line.where.line}: {line.number} would be {label}, not a class of this dataset"
        if line.folder is not None and label != line.folder:
            return (f"line {line.where.line}: {line.number} would be {label}, but the path "
                    f"{line.folder_text} names {line.folder}")
    return None


def _mapping(numbering: Numbering, numbers: Iterable[int]) -> tuple[str | None, ...]:
    return tuple(numbering.label(n) for n in sorted(set(numbers)))


def _candidates(form: str, lines: Sequence[NumberedLine], order: Sequence[str]) -> list[Numbering]:
    names = list(FORM_CANDIDATES.get(form, tuple(ORDER_NUMBERINGS)))
    if lines and all(line.folder is not None for line in lines):  # the folders can decide
        names += [n for n in NUMBERINGS if n not in names]
    return [get_numbering(n, order) for n in names]


def decide(form: str, lines: Sequence[NumberedLine], order: Sequence[str]
           ) -> tuple[list[Numbering], list[tuple[Numbering, str]], list[NumberedLine]]:
    """``(fitting, ruled_out, undecidable)`` for one group's numeric lines.

    Numbers that no candidate reads as a class of the dataset are left out of the decision
    (``undecidable``): they are a line's problem under any numbering and are reported per
    line once one is chosen.
    ``fitting`` holds one numbering per distinct reading of the group's numbers.
    """
    classes = set(order)
    candidates = _candidates(form, lines, order)
    undecidable = [ln for ln in lines if all(c.label(ln.number) not in classes for c in candidates)]
    decisive = [ln for ln in lines if ln not in undecidable]
    fitting: list[Numbering] = []
    ruled_out: list[tuple[Numbering, str]] = []
    readings: set[tuple[str | None, ...]] = set()
    numbers = [ln.number for ln in decisive]
    for c in candidates:
        why = _misfit(c, decisive, classes)
        if why is not None:
            ruled_out.append((c, why))
            continue
        reading = _mapping(c, numbers)
        if reading not in readings:
            readings.add(reading)
            fitting.append(c)
    return fitting, ruled_out, undecidable


def _numbers_text(lines: Sequence[NumberedLine]) -> str:
    return ", ".join(str(n) for n in sorted({ln.number for ln in lines}))


def decide_all(groups: Mapping[tuple[str, str], Sequence[NumberedLine]], order: Sequence[str],
               dataset: str, problems: Problems) -> dict[tuple[str, str], Decision]:
    """``auto``: the numbering of every (file, form) group, or a problem where none is certain.

    A group whose own numbers fit several numberings takes the one every decided group of the
    same form chose (the files of one release share their numbering: a test file holding only
    labels 1-6 is read like the train files of the same folder, whose 7s prove 1-based).
    """
    decided: dict[tuple[str, str], Decision] = {}
    open_groups: dict[tuple[str, str], list[Numbering]] = {}
    for key, lines in groups.items():
        form = key[1]
        fitting, ruled_out, _ = decide(form, lines, order)
        if len(fitting) == 1:
            decided[key] = Decision(fitting[0], _evidence(lines, ruled_out))
        elif not fitting:
            first = lines[0].where
            why = "; ".join(f"{c.name} ({reason})" for c, reason in ruled_out)
            problems.add(first, f"no numbering fits the numeric labels of this file (form "
                                f"{form}): {why}")
        else:
            open_groups[key] = fitting
    for key, fitting in open_groups.items():
        form = key[1]
        chosen = {d.numbering.name for k, d in decided.items() if k[1] == form and d.numbering}
        names = {c.name for c in fitting}
        if len(chosen) == 1 and chosen <= names:
            numbering = next(c for c in fitting if c.name in chosen)
            decided[key] = Decision(numbering, f"as the other {form} files of {dataset}")
            continue
        lines = groups[key]
        listed = "; ".join(f"{c.name} ({c.describe()})" for c in fitting)
        problems.add(lines[0].where,
                     f"cannot tell the numbering of this file's numeric labels ({_numbers_text(lines)}): "
                     f"they fit {listed}. Set dataset_defs.{dataset}.numbering to the one this "
                     "file uses (data_manifests/README.md lists each annotation form's numbering)")
    return decided


def _evidence(lines: Sequence[NumberedLine], ruled_out: Sequence[tuple[Numbering, str]]) -> str:
    """Why a group's numbering was chosen, in a few words (log and manifest metadata)."""
    if not ruled_out:
        return "the file's form"
    if all(ln.folder is not None for ln in lines):
        return "the only numbering under which every id names its emotion folder"
    return "; ".join(f"not {c.name}: {reason}" for c, reason in ruled_out)


def folder_emotion(path_text: str) -> str | None:
    """The canonical emotion a FERV39k ``Scene/Emotion/NNNN`` path names (None: not one)."""
    parts = [p for p in path_text.replace("\\", "/").split("/") if p not in ("", ".")]
    if len(parts) < 3:
        return None
    try:
        return canonical_label(parts[-2])
    except ValueError:
        return None
