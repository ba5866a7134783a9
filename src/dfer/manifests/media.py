"""Find each clip's video file or frame folder under the dataset root and stat it.

``size_bytes`` and ``mtime_ns`` go into the shard manifests so that replacing a video changes
its shard's manifest bytes and Snakemake re-runs that shard. This runs on every Snakemake call,
so it must stay cheap at dataset scale: one ``stat`` per clip, and one bounded directory walk
for datasets whose split files name clips without a path (DFEW, MAFW).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from dfer.manifests.readers import VIDEO_EXTENSIONS

#: Image extensions counted in a frame folder (``frames_stat: deep``).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

#: How a frame folder is fingerprinted: ``dir`` uses the folder's own stat (catches frames added,
#: removed or renamed; one syscall), ``deep`` sums the sizes and takes the newest mtime of its
#: images (also catches frames overwritten in place; one stat per frame, ~10 s per 1M frames).
FRAMES_STAT_MODES = ("dir", "deep")


@dataclass(frozen=True)
class Media:
    """A clip's source on disk."""

    path: str
    #: "video" (a file), "frames" (a folder of images) or "image" (one still image: a clip of
    #: one frame, as the static datasets' images are)
    source_kind: str
    size_bytes: int
    mtime_ns: int


def stat_media(path: str, frames_stat: str = "dir") -> Media | str:
    """Stat a video file, frame folder or still image; returns the problem as a string when
    unusable."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        what = "image" if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS else "video/frame folder"
        return f"missing {what} {path}"
    except OSError as exc:
        return f"cannot stat {path}: {exc.strerror or exc}"
    if stat.S_ISREG(st.st_mode):
        # os.path, not pathlib: this runs once per clip at every Snakemake start (AffectNet:
        # ~290 k images), where a Path per call costs seconds
        kind = "image" if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS else "video"
        return Media(path, kind, int(st.st_size), int(st.st_mtime_ns))
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is neither a video file nor a frame folder"
    if frames_stat == "dir":
        return Media(path, "frames", int(st.st_size), int(st.st_mtime_ns))
    size, newest, count = 0, 0, 0
    with os.scandir(path) as it:
        for entry in it:
            if os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file():
                est = entry.stat()
                size += est.st_size
                newest = max(newest, est.st_mtime_ns)
                count += 1
    if count == 0:
        return f"frame folder {path} holds no images"
    return Media(path, "frames", size, newest)


def find_by_name(root: str | Path, names: Collection[str], max_depth: int = 3) -> dict[str, list[str]]:
    """Map each wanted clip id to the videos (``<id>.<video ext>``) or folders (``<id>/``) under root.

    Walks at most ``max_depth`` folder levels below ``root`` and never descends into a folder
    named after a wanted clip (that is a frame folder), so a DFEW ``clip_224x224`` tree with
    ~1.5 M frames costs one listing of its top folder. Clips found more than once list every
    hit (the caller reports the ambiguity); clips not found are absent.
    """
    wanted = set(names)
    hits: dict[str, list[str]] = {}
    stack: list[tuple[str, int]] = [(str(root), 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError:
            continue
        with it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    if entry.name in wanted:
                        hits.setdefault(entry.name, []).append(entry.path)
                    elif depth < max_depth:
                        stack.append((entry.path, depth + 1))
                else:
                    stem, ext = os.path.splitext(entry.name)
                    if ext.lower() in VIDEO_EXTENSIONS and stem in wanted:
                        hits.setdefault(stem, []).append(entry.path)
    for paths in hits.values():
        paths.sort()
    return hits
