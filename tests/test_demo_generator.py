"""Demo generator: the input kind (mp4 / JPEG folder) must not track the label or the fold."""

from __future__ import annotations

from collections import Counter

import pytest

from dfer.demo import CLASSES, _expression_displacements, _is_frame_folder, _source_face


def folder_counts(clips_per_class: int, num_folds: int = 2, frames_every: int = 6) -> Counter:
    return Counter(
        (CLASSES[c], 1 + k % num_folds)
        for k in range(clips_per_class) for c in range(len(CLASSES))
        if _is_frame_folder(k, c, frames_every, num_folds)
    )


def test_frame_folders_are_balanced_over_classes_and_folds() -> None:
    counts = folder_counts(12)  # the configured demo: 60 clips, 6 per class and fold
    assert counts == Counter({(c, f): 1 for c in CLASSES for f in (1, 2)})
    # any size: both folds hold the same folder count per class
    for n in (2, 8, 16, 24):
        counts = folder_counts(n)
        assert all(counts[(c, 1)] == counts[(c, 2)] for c in CLASSES), (n, counts)
    assert sum(folder_counts(24).values()) == 20  # one clip in six


def test_tiny_demo_still_has_a_frame_folder() -> None:
    # one clip per class (tests/test_incremental.py copies frames/anger_000)
    assert [c for c in range(len(CLASSES)) if _is_frame_folder(0, c, 6, 2)] == [CLASSES.index("anger")]
    assert not any(_is_frame_folder(k, c, 0, 2) for k in range(4) for c in range(5))


@pytest.mark.parametrize("label", [c for c in CLASSES if c != "neutral"])
def test_every_expression_moves_the_face_by_a_visible_amount(label: str) -> None:
    face, _ = _source_face()
    disp = _expression_displacements(face)[label]
    # at least a few landmarks move by >= 8% of the face width at apex (a few pixels at 112 px)
    moved = (disp ** 2).sum(1) ** 0.5 / face.width
    assert (moved >= 0.08).sum() >= 4, moved.max()
    assert not _expression_displacements(face)["neutral"].any()
