"""``crop: track``: one person followed over a clip, one crop box per frame.

The ``median`` crop (one box per clip) suits datasets that ship face crops: the face barely
moves, and a still box leaves only the face's own motion. In footage from the wild the head
moves across the frame, the shot cuts, and other people come and go. This module turns the
faces detected on every sampled frame into one box per frame that follows one person:

1. **Link** detections of consecutive frames into tracks by position and size: a face
   continues a track when its centre lies within ``LINK_DISTANCE`` face widths (per sampled
   frame since the track was last seen, up to ``MAX_GAP`` frames) of the track's last box and
   its size differs by at most ``MAX_SCALE`` times; pairs are matched greedily, closest first,
   each track and face at most once per frame. A face no track accepts starts a new track.
2. **Choose** the person: the track with the largest summed box area over the clip (size
   times time on screen), ties to the track that starts first. A larger bystander who
   appears for a few frames loses to the person who is there all along; after a cut to
   another person, whoever is on screen longer (at comparable size) is kept.
3. **Fill** the frames where the chosen person was not detected (a miss, or the other side
   of a cut) by linear interpolation between the nearest detections, holding the first and
   last box at the ends: the crop never jumps to someone else, because only the chosen
   track's boxes are used.
4. **Smooth** the box centre and size with a centred moving average of ``smooth`` frames
   (shrunk symmetrically at the ends, so a face moving at constant speed is not lagged).

Linking uses geometry only: two people who take the same place and size on either side of a
cut are linked as one (telling them apart needs a face descriptor).
"""

from __future__ import annotations

import numpy as np

#: A face continues a track when its centre is within this many face widths of the track's
#: last box, per sampled frame since that box (boxes that overlap or nearly so).
LINK_DISTANCE = 0.75
#: ... and its box side is within this factor of the last box's side.
MAX_SCALE = 1.5
#: A track not seen for more than this many sampled frames takes no new faces.
MAX_GAP = 4


def _centre_side(box: np.ndarray) -> tuple[float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    return (x0 + x1) / 2, (y0 + y1) / 2, max(1.0, ((x1 - x0) + (y1 - y0)) / 2)


def link_tracks(detections: list[list[np.ndarray]]) -> list[dict[int, np.ndarray]]:
    """Tracks (frame index -> box) from the faces found on each frame (see the module doc)."""
    tracks: list[dict[int, np.ndarray]] = []
    for t, faces in enumerate(detections):
        pairs: list[tuple[float, int, int]] = []
        for k, track in enumerate(tracks):
            last_t = max(track)
            gap = t - last_t
            if gap > MAX_GAP:
                continue
            tx, ty, ts = _centre_side(track[last_t])
            for j, face in enumerate(faces):
                fx, fy, fs = _centre_side(face)
                if max(fs / ts, ts / fs) > MAX_SCALE:
                    continue
                dist = float(np.hypot(fx - tx, fy - ty)) / ((fs + ts) / 2)
                if dist <= LINK_DISTANCE * gap:
                    pairs.append((dist / gap, k, j))
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for _, k, j in sorted(pairs):
            if k in used_tracks or j in used_faces:
                continue
            tracks[k][t] = np.asarray(faces[j], dtype=np.float32)
            used_tracks.add(k)
            used_faces.add(j)
        for j, face in enumerate(faces):
            if j not in used_faces:
                tracks.append({t: np.asarray(face, dtype=np.float32)})
    return tracks


def main_track(tracks: list[dict[int, np.ndarray]]) -> dict[int, np.ndarray] | None:
    """The followed person: largest summed box area, ties to the earliest start (module doc)."""
    if not tracks:
        return None

    def weight(track: dict[int, np.ndarray]) -> float:
        return float(sum((b[2] - b[0]) * (b[3] - b[1]) for b in track.values()))

    return max(tracks, key=lambda tr: (weight(tr), -min(tr)))


def fill_and_smooth(track: dict[int, np.ndarray], num: int, smooth: int) -> np.ndarray:
    """Boxes float32 [num, 4] for every frame: gaps interpolated, ends held, then smoothed."""
    frames = np.array(sorted(track), dtype=np.float64)
    params = np.array([_centre_side(track[int(t)]) for t in frames], dtype=np.float64)
    ts = np.arange(num, dtype=np.float64)
    filled = np.stack([np.interp(ts, frames, params[:, c]) for c in range(3)], axis=1)
    half = max(0, int(smooth) // 2)
    out = np.empty_like(filled)
    for t in range(num):
        h = min(half, t, num - 1 - t)
        out[t] = filled[t - h : t + h + 1].mean(axis=0)
    cx, cy, side = out[:, 0], out[:, 1], out[:, 2]
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2],
                    axis=1).astype(np.float32)


def track_boxes(detections: list[list[np.ndarray]], frame_ids: list[int], num: int,
                smooth: int = 3) -> tuple[np.ndarray | None, int]:
    """Per-frame face boxes float32 [num, 4] of the followed person, and on how many frames it
    was detected; ``(None, 0)`` when no frame had a face.

    ``detections[k]`` are the faces found on frame ``frame_ids[k]``: linking runs over the
    examined frames in order, so frames left unexamined are filled like missed ones.
    """
    track = main_track(link_tracks(detections))
    if track is None:
        return None, 0
    return fill_and_smooth({frame_ids[k]: b for k, b in track.items()}, num, smooth), len(track)


__all__ = ["LINK_DISTANCE", "MAX_GAP", "MAX_SCALE", "fill_and_smooth", "link_tracks",
           "main_track", "track_boxes"]
