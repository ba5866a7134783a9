"""Expression class names: one canonical spelling, aliases, and a fixed order per dataset.

Public DFER repositories disagree on class orders (FERV39k loaders alone use at least two), so
nothing in dfer relies on an index coming from someone else's code: every label is mapped to a
canonical *name* first, and the index (``label_idx``) is its position in the dataset's fixed
order below. Numeric labels in split files are read through the dataset's official numbering
(DFEW: 1 happy .. 7 fear; MAFW: 1 anger .. 11 disappointment), which is the same tuple.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Canonical class names (lower-case nouns), in a fixed order used for listings.
CANONICAL_LABELS: tuple[str, ...] = (
    "happiness",
    "sadness",
    "neutral",
    "anger",
    "surprise",
    "disgust",
    "fear",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)

#: Accepted spellings (lower-case) -> canonical name. Matching is case-insensitive.
LABEL_ALIASES: dict[str, str] = {
    "happy": "happiness",
    "happiness": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "sadness": "sadness",
    "neutral": "neutral",
    "angry": "anger",
    "anger": "anger",
    "surprise": "surprise",
    "surprised": "surprise",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "contempt": "contempt",
    "contemptuous": "contempt",
    "anxiety": "anxiety",
    "anxious": "anxiety",
    "helplessness": "helplessness",
    "helpless": "helplessness",
    "disappointment": "disappointment",
    "disappointed": "disappointment",
}

_SEVEN = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")

#: The fixed class order of each dataset layout; ``label_idx`` is the position in this tuple and
#: numeric labels ``n`` in split files mean ``labels[n - label_base]`` (label_base 1 by default).
DATASET_LABELS: dict[str, tuple[str, ...]] = {
    # DFEW README: 1 Happy, 2 Sad, 3 Neutral, 4 Angry, 5 Surprise, 6 Disgust, 7 Fear.
    "dfew": _SEVEN,
    # FERV39k split files carry names; numbered annotation files (DFER-CLIP style) use this order.
    "ferv39k": _SEVEN,
    # MAFW single-expression set, official numbering.
    "mafw": (
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
        "contempt",
        "anxiety",
        "helplessness",
        "disappointment",
    ),
    # The synthetic demo generator's classes.
    "demo": ("happiness", "sadness", "neutral", "anger", "surprise"),
}


def canonical_label(name: str) -> str:
    """Return the canonical class name for ``name`` (any case, alias or canonical spelling).

    Raises ``ValueError`` naming the unknown label and every accepted spelling, so that a typo
    in a split file is fixed from the message alone.
    """
    key = str(name).strip().lower()
    if key in LABEL_ALIASES:
        return LABEL_ALIASES[key]
    raise ValueError(
        f"unknown expression label {name!r}; known labels: {', '.join(CANONICAL_LABELS)} "
        f"(also accepted: {', '.join(sorted(set(LABEL_ALIASES) - set(CANONICAL_LABELS)))})"
    )


def label_from_token(token: str, labels: Sequence[str], label_base: int = 1) -> str:
    """Map one split-file label field to a canonical name of a dataset with class order ``labels``.

    An integer field is read through the dataset's numbering (``labels[n - label_base]``); any
    other field is mapped by name. Raises ``ValueError`` when the number is out of range or the
    name is unknown or not a class of this dataset.
    """
    text = str(token).strip()
    if text.lstrip("+-").isdigit():
        number = int(text)
        index = number - label_base
        if not 0 <= index < len(labels):
            numbering = ", ".join(f"{i + label_base} {n}" for i, n in enumerate(labels))
            raise ValueError(f"label number {number} is out of range (numbering: {numbering})")
        return labels[index]
    name = canonical_label(text)
    if name not in labels:
        raise ValueError(
            f"label {text!r} ({name}) is not a class of this dataset (classes: {', '.join(labels)})"
        )
    return name


def resolve_label_order(layout: str, configured: Sequence[str] | None) -> tuple[str, ...] | None:
    """The class order of a dataset: fixed per layout; ``generic`` takes the configured list.

    Returns None for a generic dataset without configured labels (the order is then derived from
    the labels present, in canonical order). Configured labels on a fixed layout are an error,
    because the fixed order is what keeps checkpoints and metrics comparable.
    """
    if layout in DATASET_LABELS:
        if configured is not None and tuple(canonical_label(x) for x in configured) != DATASET_LABELS[layout]:
            raise ValueError(
                f"layout {layout!r} has a fixed label order ({', '.join(DATASET_LABELS[layout])}); "
                "remove `labels` from its dataset definition or use layout `generic`"
            )
        return DATASET_LABELS[layout]
    if configured is None:
        return None
    order = tuple(canonical_label(x) for x in configured)
    if len(set(order)) != len(order):
        raise ValueError(f"`labels` lists a class twice: {list(configured)}")
    return order
