"""Face detection on CPU with dlib, offline.

dlib's HOG frontal-face detector needs no weights; the CNN (MMOD) detector and the 68-point
shape predictor come from the ``face-recognition-models`` wheel, which we locate with
``importlib.util.find_spec`` without importing it (its ``__init__`` needs ``pkg_resources``,
which modern setuptools no longer ships).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

DetectorKind = Literal["hog", "mmod"]


@dataclass(frozen=True)
class FaceBox:
    """A detected face: box corners in pixels (x0, y0, x1, y1) and the detector's score."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def as_array(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.x1, self.y1], dtype=np.float32)


def model_file(name: str) -> Path:
    """Path of a model file shipped by ``face-recognition-models`` (e.g. the 68-point predictor)."""
    spec = importlib.util.find_spec("face_recognition_models")  # no import: it needs pkg_resources
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the face-recognition-models package is not installed; "
            "install it with `pip install face-recognition-models`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} not found in the face-recognition-models package ({path}); "
            "reinstall it with `pip install face-recognition-models`"
        )
    return path


SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"


@functools.lru_cache(maxsize=4)
def _detector(kind: DetectorKind):  # noqa: ANN202 - dlib objects have no stubs
    import dlib

    if kind == "hog":
        return dlib.get_frontal_face_detector()
    if kind == "mmod":
        return dlib.cnn_face_detection_model_v1(str(model_file(MMOD_DETECTOR)))
    raise ValueError(f"unknown face detector {kind!r}; expected 'hog' or 'mmod'")


def detect_faces(image: np.ndarray, kind: DetectorKind = "hog", upsample: int = 1) -> list[FaceBox]:
    """All faces in an RGB uint8 image ``[H, W, 3]``, largest first.

    The HOG detector also takes a grey image ``[H, W]`` (e.g. the luma of an RGB frame): it
    then computes gradients on one channel instead of picking the strongest of three, about
    25% faster, with the same boxes on all but a few frames (benchmarks/results/decode.md).
    """
    grey_ok = kind == "hog" and image.ndim == 2
    if image.dtype != np.uint8 or not (grey_ok or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected an RGB uint8 image [H, W, 3] (or, for hog, a grey one "
                         f"[H, W]), got {image.dtype} {image.shape}")
    det = _detector(kind)
    image = np.ascontiguousarray(image)
    boxes: list[FaceBox] = []
    if kind == "hog":
        rects, scores, _ = det.run(image, upsample, 0.0)
        for r, s in zip(rects, scores, strict=True):
            boxes.append(FaceBox(r.left(), r.top(), r.right(), r.bottom(), float(s)))
    else:
        for d in det(image, upsample):
            r = d.rect
            boxes.append(FaceBox(r.left(), r.top(), r.right(), r.bottom(), float(d.confidence)))
    boxes.sort(key=lambda b: b.area, reverse=True)
    return boxes


#: A detector setting as one word: ``hog-up0`` is dlib's HOG detector without upsampling,
#: ``mmod-up1`` the CNN detector on the image upsampled once. The decode escalation ladder and
#: the frames index's ``detector_used`` column use this spelling, so a config value and the
#: record of what found a face read the same.
RUNG_PATTERN = r"^(hog|mmod)-up[0-3]$"


def rung_name(kind: DetectorKind, upsample: int) -> str:
    """``hog-up1``: the one-word name of a detector and its upsampling."""
    return f"{kind}-up{int(upsample)}"


def parse_rung(name: str) -> tuple[DetectorKind, int]:
    """``"mmod-up1"`` -> ``("mmod", 1)``; a clear error naming the accepted spelling otherwise."""
    import re

    if not isinstance(name, str) or not re.match(RUNG_PATTERN, name):
        raise ValueError(f"detector setting {name!r} is not of the form 'hog-up0'..'hog-up3' or "
                         "'mmod-up0'..'mmod-up3' (detector, then dlib's upsampling count)")
    kind, up = name.split("-up")
    return kind, int(up)  # type: ignore[return-value]  # checked by the pattern


def largest_face(image: np.ndarray, kind: DetectorKind = "hog", upsample: int = 1) -> FaceBox | None:
    """The largest face in ``image``, or None when the detector finds none."""
    faces = detect_faces(image, kind=kind, upsample=upsample)
    return faces[0] if faces else None
