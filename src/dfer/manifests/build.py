"""Build the normalized manifest of one dataset from its split files (no writing).

Reads every split file, validates everything at once (labels, duplicates, folds, media) and
returns an Arrow table sorted by clip id with the columns of docs/architecture.md. Problems are
collected and raised together as one ``ManifestError`` listing ``FILE:LINE: problem``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dfer.core.sharding import shard_of
from dfer.manifests.labels import (
    CANONICAL_LABELS,
    label_from_name,
    label_order_note,
    resolve_label_order,
)
from dfer.manifests.media import FRAMES_STAT_MODES, Media, find_by_name, stat_media
from dfer.manifests.numbering import (
    AUTO,
    Decision,
    NumberedLine,
    Numbering,
    decide_all,
    get_numbering,
    numbering_setting,
    parse_number,
)
from dfer.manifests.problems import Location, Problems
from dfer.manifests.readers import (
    ROLE_ASSIGNED,
    ROLE_TEST,
    ROLE_TRAIN,
    SplitEntry,
    read_split_files,
)

log = logging.getLogger(__name__)

#: Columns of every manifest (whole dataset and per shard), in order.
MANIFEST_SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("path", pa.string()),
    ("source_kind", pa.string()),
    ("label", pa.string()),
    ("label_idx", pa.int32()),
    ("test_fold", pa.int32()),
    ("shard", pa.int32()),
    ("size_bytes", pa.int64()),
    ("mtime_ns", pa.int64()),
])
MANIFEST_COLUMNS = tuple(MANIFEST_SCHEMA.names)

#: Fold count of layouts whose files fix it (k-fold layouts default to 5, overridable).
_FIXED_FOLDS = {"ferv39k": 1}
_KFOLD_LAYOUTS = ("dfew", "mafw")


@dataclass(frozen=True)
class Skipped:
    """A clip left out because its media is missing (``on_missing: skip``)."""

    clip_id: str
    where: str
    message: str
    #: the clip's class and test fold: a skipped test clip still counts in the test split
    #: it was listed in ("evaluated N of M")
    label: str | None = None
    test_fold: int = 0


@dataclass
class ManifestBuild:
    """A dataset's validated manifest, ready to be sharded and written."""

    dataset: str
    layout: str
    labels: tuple[str, ...]
    num_folds: int
    num_shards: int
    table: pa.Table
    skipped: list[Skipped] = field(default_factory=list)
    #: per split file with numeric labels: the numbering they were read with and why
    #: (``{file: "dfew_official (…)"}``), recorded in the manifest's metadata
    numberings: dict[str, str] = field(default_factory=dict)

    @property
    def label_order(self) -> str:
        """Whose class order ``label_idx`` follows (dfer.manifests.labels.LABEL_ORDERS)."""
        return label_order_note(self.layout, self.labels)


@dataclass
class _Clip:
    """All entries of one clip id, merged."""

    clip_id: str
    entries: list[SplitEntry]
    label: str | None = None
    test_fold: int = 0

    @property
    def where(self) -> Location:
        """Its most telling line: the test (or direct fold) entry, else the first one."""
        for e in self.entries:
            if e.role in (ROLE_TEST, ROLE_ASSIGNED):
                return e.where
        return self.entries[0].where


def _options(name: str, definition: Mapping[str, Any]) -> dict[str, Any]:
    layout = definition["layout"]
    opts = {
        "layout": layout,
        "root": str(definition["root"]),
        "split_files": [str(p) for p in definition["split_files"]],
        "num_shards": int(definition["num_shards"]),
        "on_missing": definition.get("on_missing", "error"),
        "frames_stat": definition.get("frames_stat", "dir"),
        "numbering": numbering_setting(definition, name),
        "search_depth": int(definition.get("search_depth", 3)),
        "num_folds": definition.get("num_folds"),
    }
    if opts["on_missing"] not in ("error", "skip"):
        raise ValueError(f"dataset {name!r}: on_missing must be 'error' or 'skip', "
                         f"got {opts['on_missing']!r}")
    if opts["frames_stat"] not in FRAMES_STAT_MODES:
        raise ValueError(f"dataset {name!r}: frames_stat must be one of {FRAMES_STAT_MODES}, "
                         f"got {opts['frames_stat']!r}")
    if layout in _FIXED_FOLDS and opts["num_folds"] not in (None, _FIXED_FOLDS[layout]):
        raise ValueError(f"dataset {name!r}: layout {layout} has {_FIXED_FOLDS[layout]} fold(s) "
                         f"(a fixed train/test split); remove num_folds")
    if opts["num_folds"] is None and layout in _KFOLD_LAYOUTS:
        opts["num_folds"] = 5
    if opts["num_folds"] is None and layout in _FIXED_FOLDS:
        opts["num_folds"] = _FIXED_FOLDS[layout]
    return opts


def _merge(entries: list[SplitEntry], problems: Problems) -> dict[str, _Clip]:
    """Group entries by clip; report duplicates and train/test conflicts; derive test_fold."""
    clips: dict[str, _Clip] = {}
    for e in entries:
        clip = clips.get(e.clip_id)
        if clip is None:
            clips[e.clip_id] = _Clip(e.clip_id, [e])
            continue
        for other in clip.entries:
            same_role = other.role == e.role and (e.role != ROLE_TRAIN or other.fold == e.fold)
            if same_role:
                problems.add(e.where, f"duplicate clip id {e.clip_id} (also at {other.where})")
                break
            if {other.role, e.role} == {ROLE_TEST, ROLE_TRAIN} and other.fold == e.fold:
                problems.add(e.where, f"clip {e.clip_id} is in both the training and the test set "
                                      f"of fold {e.fold} (also at {other.where})")
                break
            if ROLE_ASSIGNED in (other.role, e.role):
                problems.add(e.where, f"duplicate clip id {e.clip_id} (also at {other.where})")
                break
        else:
            clip.entries.append(e)
    for clip in clips.values():
        for e in clip.entries:
            if e.role in (ROLE_TEST, ROLE_ASSIGNED):
                clip.test_fold = e.fold
    return clips


def _numbered_groups(clips: dict[str, _Clip]) -> dict[tuple[str, str], list[NumberedLine]]:
    """Numeric label lines grouped by (file, form): the unit a numbering is decided for."""
    groups: dict[tuple[str, str], list[NumberedLine]] = {}
    for clip in clips.values():
        for e in clip.entries:
            number = parse_number(e.label)
            if number is not None:
                groups.setdefault((e.where.file, e.form), []).append(
                    NumberedLine(e.where, number, e.folder, e.folder_path))
    for lines in groups.values():
        lines.sort(key=lambda ln: ln.where.line or 0)
    return dict(sorted(groups.items()))


def _numberings(clips: dict[str, _Clip], setting: str, order: tuple[str, ...], dataset: str,
                problems: Problems) -> dict[tuple[str, str], Decision]:
    """The numbering of every (file, form) group holding numeric labels."""
    groups = _numbered_groups(clips)
    if setting != AUTO:
        numbering = get_numbering(setting, order)
        return {key: Decision(numbering, f"dataset_defs.{dataset}.numbering") for key in groups}
    return decide_all(groups, order, dataset, problems)


def _entry_label(e: SplitEntry, pool: tuple[str, ...], numbering: Numbering | None) -> str:
    """One entry's class: a name, or its number read through ``numbering``; then checked
    against the emotion its path names. Raises ``ValueError`` with the line's problem."""
    number = parse_number(e.label)
    if number is None:
        label = label_from_name(e.label, pool)
        what = f"label {e.label.strip()!r} ({label})"
    else:
        assert numbering is not None
        mapped = numbering.label(number)
        if mapped is None:
            raise ValueError(f"label number {number} is out of range (numbering {numbering.name}: "
                             f"{numbering.describe()})")
        if mapped not in pool:
            raise ValueError(f"label number {number} is {mapped} in numbering {numbering.name}, "
                             f"not a class of this dataset (classes: {', '.join(pool)})")
        label = mapped
        what = f"label {number} ({label} in numbering {numbering.name})"
    if e.folder is not None and label != e.folder:
        folder = (e.folder_path or "").replace("\\", "/").rstrip("/").split("/")[-2:-1]
        raise ValueError(f"{what} contradicts the emotion folder {'/'.join(folder)!s} "
                         f"({e.folder}) of its path {e.folder_path}; fix the label"
                         + (" or the numbering" if number is not None else ""))
    return label


def _assign_labels(clips: dict[str, _Clip], order: tuple[str, ...] | None, setting: str,
                   dataset: str, problems: Problems) -> dict[str, str]:
    """Map every entry's label field to a canonical name; entries of one clip must agree.

    Numeric fields are read by the numbering of their (file, form) (:mod:`numbering`); a
    group whose numbering is uncertain is one problem, and its lines are not read at all.
    Returns ``{file: "numbering (why)"}`` for the manifest's metadata.
    """
    pool = order if order is not None else CANONICAL_LABELS
    decisions = _numberings(clips, setting, pool, dataset, problems)
    for clip in clips.values():
        for e in clip.entries:
            key = (e.where.file, e.form)
            if parse_number(e.label) is not None and key not in decisions:
                continue  # the file's numbering is uncertain: reported once, above
            decision = decisions.get(key)
            try:
                result = _entry_label(e, pool, decision.numbering if decision else None)
            except ValueError as exc:
                problems.add(e.where, str(exc))
                continue
            if clip.label is None:
                clip.label = result
            elif clip.label != result:
                first = next(x for x in clip.entries if x is not e)
                problems.add(e.where, f"label {result} of clip {clip.clip_id} disagrees with "
                                      f"{clip.label} at {first.where}")
    return {file: f"{d.numbering.name} ({d.reason})" for (file, _), d in decisions.items()
            if d.numbering is not None}


def _check_folds(clips: dict[str, _Clip], num_folds: int | None, problems: Problems) -> int:
    """Directly given folds must lie in 0..num_folds (num_folds defaults to the largest seen)."""
    seen = [c.test_fold for c in clips.values()]
    folds = num_folds if num_folds is not None else max([1, *seen])
    for clip in clips.values():
        for e in clip.entries:
            if e.role == ROLE_ASSIGNED and not 0 <= e.fold <= folds:
                problems.add(e.where, f"test_fold {e.fold} out of range 0..{folds}")
    return folds


def _check_test_folds(name: str, clips: dict[str, _Clip], num_folds: int, opts: Mapping[str, Any],
                      configured: bool, problems: Problems) -> None:
    """Every fold 1..num_folds must have test clips: a fold without any would be trained and
    "evaluated" on nothing. The usual cause is an incomplete copy of the split files (only
    ``set_1`` and ``set_2`` of DFEW's five), which would otherwise silently become five folds.
    """
    tested = {c.test_fold for c in clips.values()}
    empty = [k for k in range(1, num_folds + 1) if k not in tested]
    if not empty:
        return
    where = Location(", ".join(opts["split_files"]))
    folds = ", ".join(str(k) for k in empty)
    if opts["layout"] in _KFOLD_LAYOUTS:
        present = sorted(k for k in tested if k > 0)
        missing = ", ".join(f"set_{k}" for k in empty)
        fix = (f"add the missing files, or set `num_folds: {max(present)}` in dataset_defs.{name} "
               "if the dataset really has fewer folds" if present and not configured else
               "add the missing files")
        problems.add(where, f"fold(s) {folds} of {num_folds} have no test clips: no test split "
                            f"file for {missing} was found; {fix}")
    elif opts["layout"] in _FIXED_FOLDS:
        problems.add(where, "no test clips: the test split file (e.g. test_All.csv) is missing "
                            "from split_files")
    else:
        problems.add(where, f"fold(s) {folds} of {num_folds} have no test clips (no row has that "
                            "test_fold); renumber the folds or set num_folds")


def _check_root(name: str, clips: dict[str, _Clip], root: str, problems: Problems) -> bool:
    """One problem for a missing or empty ``root`` instead of one "missing video" per clip."""
    needs_root = any(all(e.path is None or not os.path.isabs(e.path) for e in c.entries)
                     for c in clips.values())
    if not needs_root:
        return True
    where = Location(f"dataset_defs.{name}.root")
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        problems.add(where, f"the dataset root {root} {what}; set `root` to the folder that holds "
                            f"the clips ({len(clips)} listed in the split files)")
        return False
    with os.scandir(root) as it:
        if not any(not e.name.startswith(".") for e in it):
            problems.add(where, f"the dataset root {root} is an empty folder; set `root` to the "
                                f"folder that holds the clips ({len(clips)} listed)")
            return False
    return True


def _resolve_media(clips: dict[str, _Clip], root: str, opts: Mapping[str, Any],
                   problems: Problems) -> tuple[dict[str, Media], list[Skipped]]:
    """Find and stat every clip's media; missing media is a problem or a skip (``on_missing``)."""
    by_name = [c.clip_id for c in clips.values() if all(e.path is None for e in c.entries)]
    found = find_by_name(root, by_name, opts["search_depth"]) if by_name else {}
    media: dict[str, Media] = {}
    skipped: list[Skipped] = []
    for clip in clips.values():
        given = next((e.path for e in clip.entries if e.path is not None), None)
        if given is not None:
            path = given if os.path.isabs(given) else os.path.join(root, given)
            result: Media | str = stat_media(path, opts["frames_stat"])
        else:
            hits = found.get(clip.clip_id, [])
            if len(hits) > 1:
                problems.add(clip.where, f"clip {clip.clip_id} found more than once under {root}: "
                                         f"{', '.join(hits)}; point `root` at one of them")
                continue
            result = (stat_media(hits[0], opts["frames_stat"]) if hits else
                      f"missing video/frame folder: no {clip.clip_id}.<video ext> or "
                      f"{clip.clip_id}/ within {opts['search_depth']} levels under {root}")
        if isinstance(result, Media):
            media[clip.clip_id] = result
        elif opts["on_missing"] == "skip" and result.startswith("missing"):
            skipped.append(Skipped(clip.clip_id, str(clip.where), result, clip.label,
                                   clip.test_fold))
        else:
            problems.add(clip.where, result)
    return media, skipped


def build_manifest(name: str, definition: Mapping[str, Any]) -> ManifestBuild:
    """Read, validate and normalize one dataset's split files; raises ``ManifestError``."""
    opts = _options(name, definition)
    layout = opts["layout"]
    order = resolve_label_order(layout, definition.get("labels"))
    problems = Problems()
    entries = read_split_files(layout, opts["split_files"], opts["num_folds"], problems)
    clips = _merge(entries, problems)
    if not clips and not problems:
        problems.add(Location(", ".join(opts["split_files"])), "no clips listed")
    numberings = _assign_labels(clips, order, opts["numbering"], name, problems)
    for file, how in numberings.items():
        log.info("dataset %s: numeric labels of %s read with numbering %s", name, file, how)
    num_folds = _check_folds(clips, opts["num_folds"], problems)
    if not problems:  # a file that failed to read would only show up again as empty folds
        _check_test_folds(name, clips, num_folds, opts, definition.get("num_folds") is not None,
                          problems)
    problems.raise_if_any(name)  # media lookups of a broken split would only add noise
    _check_root(name, clips, opts["root"], problems)
    problems.raise_if_any(name)  # a wrong root: one problem, not one per clip
    media, skipped = _resolve_media(clips, opts["root"], opts, problems)
    problems.raise_if_any(name)
    if skipped:
        log.warning("dataset %s: skipped %d clip(s) with missing media (on_missing: skip):\n%s",
                    name, len(skipped), "\n".join(f"  {s.where}: {s.message}" for s in skipped))
    if order is None:  # generic without configured labels: canonical order of those present
        present = {c.label for c in clips.values() if c.clip_id in media}
        order = tuple(x for x in CANONICAL_LABELS if x in present)
    index = {label: i for i, label in enumerate(order)}
    ids = sorted(media)
    rows = [(clips[i], media[i]) for i in ids]
    num_shards = opts["num_shards"]
    table = pa.table({
        "clip_id": ids,
        "path": [m.path for _, m in rows],
        "source_kind": [m.source_kind for _, m in rows],
        "label": [c.label for c, _ in rows],
        "label_idx": [index[c.label] for c, _ in rows],
        "test_fold": [c.test_fold for c, _ in rows],
        "shard": [shard_of(i, num_shards) for i in ids],
        "size_bytes": [m.size_bytes for _, m in rows],
        "mtime_ns": [m.mtime_ns for _, m in rows],
    }, schema=MANIFEST_SCHEMA)
    return ManifestBuild(name, layout, tuple(order), num_folds, num_shards, table, skipped,
                         numberings)

