"""Expression class names: one canonical spelling, aliases, and a fixed order per dataset.

Public DFER repositories disagree on class orders (FERV39k loaders alone use at least two), so
nothing in dfer relies on an index coming from someone else's code: every label is mapped to a
canonical *name* first, and the index (``label_idx``) is its position in the dataset's fixed
order below (:data:`DATASET_LABELS`; :data:`LABEL_ORDERS` says where each order comes from,
and every output that holds indices, probabilities or a confusion matrix records it). What a
*number* in a split file means is a separate question, answered per annotation form by
:mod:`dfer.manifests.numbering`: the order of ``label_idx`` is not the numbering of any file.
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

#: DFEW's classes in its official order (README: 1 Happy, 2 Sad, 3 Neutral, 4 Angry,
#: 5 Surprise, 6 Disgust, 7 Fear).
SEVEN = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")
_SEVEN = SEVEN

#: The fixed class order of each dataset layout: ``label_idx`` is the position in this tuple,
#: and so are the rows / columns of confusion matrices and the entries of ``probs``. Numeric
#: labels in split files are read by their own numbering (dfer.manifests.numbering), never
#: through this order (except the numberings ``order_from_0`` / ``order_from_1``).
DATASET_LABELS: dict[str, tuple[str, ...]] = {
    "dfew": _SEVEN,
    # NOT FERV39k's label_index.txt order (alphabetical: Angry 0 ... Surprise 6): DFEW's, so
    # that DFEW <-> FERV39k transfers and tables line up class by class (LABEL_ORDERS).
    "ferv39k": _SEVEN,
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

#: Where each layout's class order comes from: recorded as ``label_order`` in the manifest
#: metadata, metrics.json and predictions.parquet, so that a reader of indices, ``probs`` or a
#: confusion matrix knows whose order it is (docs: data_manifests/README.md).
LABEL_ORDERS: dict[str, str] = {
    "dfew": "dfew: DFEW's official order (happiness, sadness, neutral, anger, surprise, disgust, "
            "fear)",
    "ferv39k": "ferv39k: DFEW's order (happiness first), not FERV39k's alphabetical "
               "label_index.txt order",
    "mafw": "mafw: MAFW's order as dfer lists it (the seven basic classes anger ... surprise, "
            "then contempt, anxiety, helplessness, disappointment); not S2D's alphabetical "
            "id_to_calss.txt order nor DFER-CLIP's",
    "demo": "demo: the demo generator's order",
}


def label_order_note(layout: str, labels: Sequence[str]) -> str:
    """The ``label_order`` text of a dataset: its layout's note, or the configured / derived
    order of a generic dataset spelled out."""
    if layout in LABEL_ORDERS:
        return LABEL_ORDERS[layout]
    return f"{layout}: the configured order ({', '.join(labels)})"


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


def label_from_name(text: str, labels: Sequence[str]) -> str:
    """The canonical name of a *named* label field, which must be one of ``labels``.

    An unknown spelling is an error listing this dataset's classes and their accepted
    spellings (not every class dfer knows: a 7-class dataset's typo lists 7 classes); a MAFW
    compound label (``anger_disgust``) says that the compound set is a separate task.
    """
    text = str(text).strip()
    try:
        name = canonical_label(text)
    except ValueError:
        parts = [p for p in text.replace("-", "_").split("_") if p]
        if len(parts) > 1 and all(p.lower() in LABEL_ALIASES for p in parts):
            raise ValueError(
                f"compound label {text!r}: MAFW's compound-expression set is a separate task; "
                "use the single-expression split files (single/no_caption)") from None
        spellings = sorted(a for a, c in LABEL_ALIASES.items() if c in labels and a not in labels)
        raise ValueError(
            f"unknown expression label {text!r}; classes of this dataset: {', '.join(labels)}"
            + (f" (also accepted: {', '.join(spellings)})" if spellings else "")) from None
    if name not in labels:
        raise ValueError(
            f"label {text!r} ({name}) is not a class of this dataset (classes: {', '.join(labels)})"
        )
    return name


def label_from_token(token: str, labels: Sequence[str], label_base: int = 1) -> str:
    """One label field of a dataset with class order ``labels``: a name, or a number counted
    along ``labels`` from ``label_base`` (the numbering ``order_from_<base>``).

    Split files are read per annotation form instead (:mod:`dfer.manifests.numbering`); this is
    the plain rule for one field. Raises ``ValueError`` when the number is out of range or the
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
    return label_from_name(text, labels)


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
