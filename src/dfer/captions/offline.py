"""Offline describer: a factual caption from the dynamics of the 68 facial landmarks.

Where no MLLM can run (no GPU, no weights), the captions stage still needs a text per clip
that carries the same kind of evidence the paper's MLLM gives: how the mouth, lip corners,
eyes, eyebrows and head move across the clip. This module measures those movements from the
iBUG-68 points of the landmarks stage, normalised by the face size (outer eye-corner
distance) so that a close-up and a distant face read the same, and renders them in plain,
emotion-free sentences. Deterministic: the same points give the same text.

iBUG-68 layout used: jaw 0-16, brows 17-21 / 22-26, nose 27-35, eyes 36-41 / 42-47, outer
lips 48-59, inner lips 60-67.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dfer.captions.base import ClipInput, Description

#: Measured features, in the order they are described.
FEATURES = ("mouth_open", "mouth_width", "corner_lift", "brow_raise", "brow_gap", "eye_open",
            "head_yaw")


@dataclass(frozen=True)
class _Wording:
    """How one feature is put into words, and how large a change must be to be mentioned."""

    subject: str
    up: str            # verb phrase when the value grows
    down: str          # verb phrase when it shrinks
    back_up: str       # "... and then <back_up>" after a dip
    back_down: str     # "... and then <back_down>" after a peak
    threshold: float   # smallest range (in eye-distance units) worth mentioning


WORDINGS: dict[str, _Wording] = {
    "mouth_open": _Wording("the mouth", "opens", "closes", "opens again", "closes again", 0.06),
    "mouth_width": _Wording("the lips", "stretch wider", "narrow", "stretch again",
                            "relax again", 0.05),
    "corner_lift": _Wording("the lip corners", "rise", "pull down", "rise again",
                            "settle back", 0.04),
    "brow_raise": _Wording("the eyebrows", "raise", "lower", "raise again", "lower again",
                           0.04),
    "brow_gap": _Wording("the inner brows", "move apart", "draw together", "move apart again",
                         "draw together again", 0.04),
    "eye_open": _Wording("the eyes", "widen", "narrow", "open again", "narrow again", 0.06),
    "head_yaw": _Wording("the head", "turns toward the image right", "turns toward the image left",
                         "turns back", "turns back", 0.06),
}


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


def landmark_features(points: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame facial measurements from ``points`` ``[T, 68, 2]`` (x, y in pixels).

    Every distance is divided by the outer eye-corner distance of its frame. ``eye_open`` is
    the eye aspect ratio (lid gap over eye width); ``corner_lift`` is how far the lip
    corners sit above the centre of the upper lip (grows when the corners rise); ``head_yaw`` is the
    nose tip's horizontal offset from the jaw's middle over the jaw width.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must have shape [T, 68, 2], got {list(p.shape)}")
    iod = np.maximum(_dist(p[:, 36], p[:, 45]), 1e-6)
    inner_top, inner_bottom = p[:, [61, 62, 63]], p[:, [67, 66, 65]]
    mouth_open = _dist(inner_top, inner_bottom).mean(axis=1) / iod
    mouth_width = _dist(p[:, 48], p[:, 54]) / iod
    # Against the upper lip's centre, which a dropping jaw does not move (the lower lip does).
    upper_lip_y = (p[:, 51, 1] + p[:, 62, 1]) / 2
    corner_lift = (upper_lip_y - (p[:, 48, 1] + p[:, 54, 1]) / 2) / iod
    eye_line_y = p[:, 36:48, 1].mean(axis=1)
    brow_raise = (eye_line_y - p[:, 17:27, 1].mean(axis=1)) / iod
    brow_gap = _dist(p[:, 21], p[:, 22]) / iod

    def ear(e: np.ndarray) -> np.ndarray:
        gap = _dist(e[:, 1], e[:, 5]) + _dist(e[:, 2], e[:, 4])
        return gap / np.maximum(2 * _dist(e[:, 0], e[:, 3]), 1e-6)

    eye_open = (ear(p[:, 36:42]) + ear(p[:, 42:48])) / 2
    jaw_width = np.maximum(p[:, 16, 0] - p[:, 0, 0], 1e-6)
    head_yaw = (p[:, 30, 0] - (p[:, 0, 0] + p[:, 16, 0]) / 2) / jaw_width
    return {
        "mouth_open": mouth_open, "mouth_width": mouth_width, "corner_lift": corner_lift,
        "brow_raise": brow_raise, "brow_gap": brow_gap, "eye_open": eye_open,
        "head_yaw": head_yaw,
    }


def _smooth(x: np.ndarray) -> np.ndarray:
    """Median over 3 frames: one jittery landmark frame should not read as a movement."""
    if len(x) < 3:
        return x
    padded = np.concatenate([x[:1], x, x[-1:]])
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


def _degree(change: float, threshold: float) -> str:
    if change < 2 * threshold:
        return "slightly "
    if change >= 4 * threshold:
        return "markedly "
    return ""


def describe_series(name: str, series: np.ndarray) -> str | None:
    """One clause for feature ``name`` over time, or None when it does not move enough."""
    w = WORDINGS[name]
    x = _smooth(np.asarray(series, dtype=np.float64))
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < w.threshold:
        return None
    k = max(1, len(x) // 4)
    start, end = float(x[:k].mean()), float(x[-k:].mean())
    net = end - start
    if abs(net) >= 0.5 * (hi - lo):
        verb = w.up if net > 0 else w.down
        return f"{w.subject} {_degree(abs(net), w.threshold)}{verb}"
    # Little net change: an excursion in the middle (peak or dip) and back.
    peak_first = hi - max(start, end) >= min(start, end) - lo
    if peak_first:
        return f"{w.subject} {_degree(hi - lo, w.threshold)}{w.up} and then {w.back_down}"
    return f"{w.subject} {_degree(hi - lo, w.threshold)}{w.down} and then {w.back_up}"


def _count_blinks(eye_open: np.ndarray) -> int:
    """Frames where the eye aspect ratio dips under half its median, counted as events."""
    if len(eye_open) < 3:
        return 0
    closed = eye_open < 0.5 * float(np.median(eye_open))
    return int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])


def _join(clauses: list[str]) -> str:
    if len(clauses) == 1:
        return clauses[0]
    return ", ".join(clauses[:-1]) + " and " + clauses[-1]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def describe_landmarks(points: np.ndarray, has_face: np.ndarray | None = None) -> str:
    """A caption of the facial movements in a clip, from its landmarks ``[T, 68, 2]``.

    Frames with ``has_face == False`` (points copied from a neighbour by the landmarks
    stage) are left out of the measurements. Raises ``ValueError`` when fewer than two
    frames have a detected face: there is no movement to describe. A clip of one frame (a
    still image of a static dataset) with its face is described as that frame held still: the
    caption a clip of copies of it would get.
    """
    pts = np.asarray(points, dtype=np.float64)
    mask = np.ones(len(pts), bool) if has_face is None else np.asarray(has_face, bool)
    if mask.shape != (len(pts),):
        raise ValueError(f"has_face has shape {list(mask.shape)}, expected [{len(pts)}]")
    if len(pts) == 1 and mask.all():  # a still image: no movement, by design
        pts, mask = np.repeat(pts, 2, axis=0), np.ones(2, bool)
    pts = pts[mask]
    if len(pts) < 2:
        raise ValueError(f"only {len(pts)} frame(s) with a detected face; need at least 2")
    feats = landmark_features(pts)
    mouth = [c for n in ("mouth_open", "mouth_width", "corner_lift")
             if (c := describe_series(n, feats[n]))]
    upper = [c for n in ("brow_raise", "brow_gap", "eye_open")
             if (c := describe_series(n, feats[n]))]
    blinks = _count_blinks(feats["eye_open"])
    if blinks:
        # A blink is the eyes narrowing and opening again: say it once, as a blink.
        upper = [c for c in upper if not (c.startswith("the eyes") and "and then" in c)]
        upper.append("the eyes blink" + (" once" if blinks == 1 else f" {blinks} times"))
    head = describe_series("head_yaw", feats["head_yaw"])

    sentences = []
    if mouth:
        sentences.append(_sentence("Over the clip " + _join(mouth)))
    if upper:
        sentences.append(_sentence(_join(upper)))
    if head:
        sentences.append(_sentence(head))
    if not sentences:
        still = "open" if float(np.median(feats["mouth_open"])) >= 0.15 else "closed"
        sentences.append(
            f"The face stays still. The mouth stays {still}, the eyebrows stay level and "
            "the eyes keep the same opening."
        )
    return " ".join(sentences)


class OfflineDescriber:
    """The ``offline`` backend: :func:`describe_landmarks` for each clip, no model needed."""

    name = "offline"
    needs_frames = False
    needs_landmarks = True

    def __init__(self, model: str) -> None:
        self.model = model

    def describe(self, clips: Sequence[ClipInput], prompt: str) -> list[Description]:
        """The prompt is ignored: the describer answers the same question by construction."""
        out: list[Description] = []
        for clip in clips:
            t0 = time.perf_counter()
            if clip.points is None:
                out.append(Description(clip.clip_id, error_type="MissingLandmarks",
                                       message=f"clip {clip.clip_id}: no landmarks rows"))
                continue
            try:
                text = describe_landmarks(clip.points, clip.has_face)
            except ValueError as exc:
                out.append(Description(clip.clip_id, error_type="NoFace",
                                       message=f"clip {clip.clip_id}: {exc}"))
                continue
            out.append(Description(clip.clip_id, text=text, num_tokens=len(text.split()),
                                   seconds=time.perf_counter() - t0))
        return out

    def close(self) -> None:
        """Nothing to release."""
