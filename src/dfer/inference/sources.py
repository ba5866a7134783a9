"""Which clips a ``dfer predict`` command line names: files, frame folders, folders of clips, globs.

The rule, applied to each argument in order:

* a **glob** (an argument with ``*``, ``?`` or ``[`` that is not itself an existing path;
  quote it so that the shell passes it through, ``**`` recurses) is expanded here, sorted, and
  every match is taken as if it had been named on its own;
* a **file** is one video clip, whatever its extension (a file that is not a video is reported
  as unreadable for that clip, not skipped);
* a **folder that directly holds image files** (``.jpg .jpeg .png .bmp .webp``) and no clips
  (no video files, no subfolders of images) is one clip, a frame folder, its images in natural
  order (``frame2`` before ``frame10``);
* any **other folder is a folder of clips**: each video file in it (by extension: ``.mp4 .avi
  .mkv .mov .webm .m4v .flv .mpg .mpeg .wmv``) and each subfolder that directly holds images is
  one clip, in natural order of their names; deeper folders are not searched, other files are
  ignored. Image files lying directly in a folder of clips (a cover picture beside the videos)
  are not a clip: they are not predicted, and a note names them (``notes``), since taking the
  whole folder for one frame folder would silently ignore its videos.

A path named twice (also through two globs, or a folder and a file in it) is predicted once, at
its first position. An argument that yields no clip (a missing path, a glob that matches
nothing, a folder with neither videos nor frame folders) becomes one :class:`Source` with its
``error`` set, so that it is reported like any clip that failed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dfer.video.api import SourceKind
from dfer.video.reader import IMAGE_EXTENSIONS, natural_key  # frame folders: which, what order

#: video files picked up in a folder of clips (a file named on its own is tried whatever it is)
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".flv", ".mpg",
                              ".mpeg", ".wmv"})


@dataclass(frozen=True)
class Source:
    """One clip to predict: its path as the user will read it, and how to decode it.

    ``error`` (with ``error_type``) is set for an argument that named no clip; ``kind`` is
    then meaningless.
    """

    path: str
    kind: SourceKind = "video"
    error_type: str | None = None
    error: str | None = None


def _has_images(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                       for e in it)
    except OSError:
        return False


def _is_glob(arg: str) -> bool:
    return glob.has_magic(arg) and not os.path.exists(arg)


def _is_image(entry: os.DirEntry) -> bool:
    return entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS


def _folder_sources(folder: Path, notes: list[str]) -> list[Source]:
    """The clips of a folder (see the module docstring): itself when it is a frame folder,
    else its videos and frame folders, or one error source; a note for loose images beside
    clips."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: natural_key(e.name))
    except OSError as exc:
        return [Source(str(folder), error_type="unreadable",
                       error=f"cannot list the folder ({exc.strerror or exc})")]
    out: list[Source] = []
    for entry in entries:
        path = folder / entry.name
        if entry.is_file() and os.path.splitext(entry.name)[1].lower() in VIDEO_EXTENSIONS:
            out.append(Source(str(path), "video"))
        elif entry.is_dir() and _has_images(path):
            out.append(Source(str(path), "frames"))
    images = [e.name for e in entries if _is_image(e)]
    if images and not out:
        return [Source(str(folder), "frames")]
    if images:
        shown = ", ".join(images[:5]) + (f", ... ({len(images)} in all)" if len(images) > 5 else "")
        notes.append(f"{folder}: {len(images)} image file(s) not predicted ({shown}): a folder "
                     f"holding videos or frame folders is a folder of clips, and its "
                     f"{len(out)} clip(s) were predicted; to predict the images as one clip, "
                     "move them into a folder of their own (a frame folder)")
    if not out:
        return [Source(str(folder), error_type="no_frames", error=(
            "empty folder: no video files (" + " ".join(sorted(VIDEO_EXTENSIONS)) + ") and no "
            "frame folders (subfolders of images) in it, and no images of its own"))]
    return out


def _one(path: Path, notes: list[str]) -> list[Source]:
    if path.is_dir():
        return _folder_sources(path, notes)
    if path.exists() or path.is_symlink():
        return [Source(str(path), "video")]
    return [Source(str(path), error_type="missing_file", error="no such file or folder")]


def expand_sources(args: Iterable[str | os.PathLike[str]],
                   notes: list[str] | None = None) -> list[Source]:
    """The clips named by ``args`` (files, frame folders, folders of clips, globs), in order,
    each path once; arguments that name no clip give error sources (module docstring).
    ``notes`` (when given) receives one line per folder whose loose images were not taken."""
    notes = [] if notes is None else notes
    out: list[Source] = []
    seen: set[str] = set()

    def add(sources: Sequence[Source]) -> None:
        for s in sources:
            key = os.path.realpath(s.path) if s.error is None else f"\0{s.path}"
            if key not in seen:
                seen.add(key)
                out.append(s)

    for arg in args:
        text = os.fspath(arg)
        if _is_glob(text):
            matches = sorted(glob.glob(text, recursive=True), key=natural_key)
            if not matches:
                add([Source(text, error_type="missing_file", error="the pattern matches no file "
                            "or folder")])
            for m in matches:
                add(_one(Path(m), notes))
        else:
            add(_one(Path(text), notes))
    return out
