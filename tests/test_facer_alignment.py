"""The facer parsing path's face alignment, against geometry worked out by hand (issue 25).

tests/test_parsing.py runs facer with a network that labels pixels by their colour: the
warp there and back returns every pixel to where it came from, so any alignment, right or
wrong, gives the same map. The stand-in network here ignores the picture and labels the four
quadrants of the *aligned* 448 x 448 face, so the map that comes back shows where our five
points (derived from the 68 landmarks) put the aligned face in the frame.

``farl/celebm/448`` aligns without the tanh warp: facer takes the eyes and mouth corners,
builds FFHQ's crop square (centre ``c = eye_avg + 0.1 (mouth_avg - eye_avg)``, half side
``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)``, axes along the eye line; ``+0.5`` pixel-centre
offsets) and maps it onto the 448 px crop, so quadrant and window edges in the frame follow
by hand. ``farl/lapa/448`` adds a tanh warp; there the map must move with the face, pixel
for pixel. No weights are downloaded: the network is scripted here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from face_geometry import SIZE, square_face

from dfer.parsing import LABEL_INDEX, parse_clip

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

#: aligned quadrant -> the facer class it is labelled with (by name), and its canonical label
QUADRANTS = {"top_left": "re", "top_right": "le", "bottom_left": "nose", "bottom_right": "imouth"}
CANONICAL = {"re": LABEL_INDEX["r_eye"], "le": LABEL_INDEX["l_eye"], "nose": LABEL_INDEX["nose"],
             "imouth": LABEL_INDEX["inner_mouth"]}


class _Quadrants(torch.nn.Module):
    """Stand-in FaRL network: logit 1 for the class of the aligned pixel's quadrant, 0.5 for
    background, 0 otherwise (so outside the aligned crop, where facer pads with zeros,
    background wins the tie); ``(logits, aux)`` out, as facer's networks return."""

    def __init__(self, num_classes: int, classes: list[int]) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.classes = classes  # top-left, top-right, bottom-left, bottom-right

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        logits = torch.zeros(n, self.num_classes, h, w, dtype=x.dtype)
        logits[:, 0] = 0.5
        logits[:, self.classes[0], : h // 2, : w // 2] = 1.0
        logits[:, self.classes[1], : h // 2, w // 2:] = 1.0
        logits[:, self.classes[2], h // 2:, : w // 2] = 1.0
        logits[:, self.classes[3], h // 2:, w // 2:] = 1.0
        return logits, x


def _weights(folder, model: str):
    from dfer.parsing.facer_backend import label_names, weights_url

    names = label_names(model)
    net = _Quadrants(len(names), [names.index(QUADRANTS[q]) for q in ("top_left", "top_right", "bottom_left",
                                                                      "bottom_right")])
    torch.jit.save(torch.jit.script(net), str(folder / weights_url(model).rsplit("/", 1)[1]))
    return folder


def _expected_celebm(eyes: tuple, mouth: tuple, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The map by hand for an upright face (eyes level, mouth corners level), and a mask of
    the pixels at least 2 px from any quadrant or crop edge (bilinear blending there)."""
    (lx, ly), (rx, ry) = eyes
    (mlx, mly), (mrx, mry) = mouth
    eye_avg = np.array([(lx + rx) / 2 + 0.5, (ly + ry) / 2 + 0.5])
    mouth_avg = np.array([(mlx + mrx) / 2 + 0.5, (mly + mry) / 2 + 0.5])
    half = max(2 * abs(rx - lx), 1.8 * abs(mouth_avg[1] - eye_avg[1]))
    cx, cy = eye_avg + 0.1 * (mouth_avg - eye_avg)
    x = np.arange(size) + 0.5  # pixel centres
    gx, gy = np.meshgrid(x, x)
    inside = (np.abs(gx - cx) < half) & (np.abs(gy - cy) < half)
    top, left = gy < cy, gx < cx
    want = np.zeros((size, size), np.uint8)
    for quadrant, cond in (("top_left", top & left), ("top_right", top & ~left),
                           ("bottom_left", ~top & left), ("bottom_right", ~top & ~left)):
        want[cond & inside] = CANONICAL[QUADRANTS[quadrant]]
    edge = np.minimum.reduce([np.abs(gx - cx), np.abs(gy - cy), np.abs(np.abs(gx - cx) - half),
                              np.abs(np.abs(gy - cy) - half)])
    return want, edge >= 2


def test_celebm_alignment_puts_the_aligned_crop_where_the_landmarks_say(tmp_path) -> None:
    """Frame 0: the square face (eyes (78, 95) and (146, 95) as means of points 36-41 and
    42-47, mouth corners (80, 160), (144, 160)): crop centre (112.5, 102), half side 136, the
    whole frame inside. Frame 1: no landmarks. Frame 2: the face at half size moved by
    (50, 60): eyes (89, 107.5), (123, 107.5), mouth (90, 140), (122, 140): centre
    (106.5, 111.25), half side 68, background outside. Frame 3: that face moved on by
    (40, 20), in the second batch of two (each frame must meet its own points)."""
    face = square_face()
    small = face * 0.5 + np.array([50.0, 60.0], np.float32)
    points = np.stack([face, np.full_like(face, np.nan), small, small + np.array([40.0, 20.0], np.float32)])
    frames = np.zeros((4, SIZE, SIZE, 3), np.uint8)
    cfg = {"backend": "facer", "model": "farl/celebm/448", "device": "cpu",
           "weights": str(_weights(tmp_path, "farl/celebm/448")), "batch_size": 2}
    maps = parse_clip(frames, points, cfg)
    assert maps.shape == (4, SIZE, SIZE)
    want, sure = _expected_celebm(((78, 95), (146, 95)), ((80, 160), (144, 160)))
    assert sure.mean() > 0.9 and (want > 0).all()  # the whole frame is inside the crop
    np.testing.assert_array_equal(maps[0][sure], want[sure])
    assert maps[1].max() == 0
    want, sure = _expected_celebm(((89, 107.5), (123, 107.5)), ((90, 140), (122, 140)))
    assert (want == 0).mean() > 0.5  # most of the frame lies outside the smaller crop
    np.testing.assert_array_equal(maps[2][sure], want[sure])
    want, sure = _expected_celebm(((129, 127.5), (163, 127.5)), ((130, 160), (162, 160)))
    np.testing.assert_array_equal(maps[3][sure], want[sure])
    # the hand-picked pixels: the eye on the image's left is in the aligned top-left quadrant
    assert maps[0][95, 78] == LABEL_INDEX["r_eye"] and maps[0][95, 146] == LABEL_INDEX["l_eye"]
    assert maps[0][160, 80] == LABEL_INDEX["nose"] and maps[0][160, 144] == LABEL_INDEX["inner_mouth"]
    assert maps[2][20, 20] == 0 and maps[2][107, 89] == LABEL_INDEX["r_eye"]


def test_lapa_alignment_moves_with_the_face(tmp_path) -> None:
    """``farl/lapa/448`` (template alignment and tanh warp): landmarks moved by (9, -6) px move
    the map by the same; the quadrants keep their place around the face (eyes above and
    beside, mouth corners below and beside the crop centre)."""
    face = square_face() * 0.8 + np.array([20.0, 30.0], np.float32)
    shift = np.array([9.0, -6.0], np.float32)
    points = np.stack([face, face + shift])
    cfg = {"backend": "facer", "model": "farl/lapa/448", "device": "cpu",
           "weights": str(_weights(tmp_path, "farl/lapa/448")), "batch_size": 4}
    maps = parse_clip(np.zeros((2, SIZE, SIZE, 3), np.uint8), points, cfg)
    moved = np.zeros_like(maps[0])
    moved[6:, : SIZE - 9] = maps[1][: SIZE - 6, 9:]  # undo the shift: frame 1 at (x + 9, y - 6)
    region = np.zeros_like(maps[0], dtype=bool)
    region[6:, : SIZE - 9] = True
    assert (maps[0][region] == moved[region]).mean() > 0.995
    assert set(np.unique(maps[0])) == set(CANONICAL.values())  # the tanh warp reaches every pixel
    eye_l, eye_r = face[36:42].mean(0), face[42:48].mean(0)
    for (x, y), label in ((eye_l, "r_eye"), (eye_r, "l_eye"), (face[48], "nose"), (face[54], "inner_mouth")):
        assert maps[0][int(round(y)), int(round(x))] == LABEL_INDEX[label], (x, y, label)
