"""Zero-shot label mapping: which text the model scores for each class of the evaluated dataset.

A checkpoint is evaluated against the *evaluated* dataset's class names, in that dataset's order;
``label_prompts`` may re-word some of them (``{"neutral": "calm"}``). Kept free of torch so that it
is cheap to test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def label_prompts_for(labels: Sequence[str], label_prompts: Mapping[str, str] | None) -> list[str]:
    """The prompt text of each label, in the order of ``labels``: its re-wording in
    ``label_prompts`` when there is one, else the label itself. Entries of ``label_prompts`` for
    labels the dataset does not have are ignored."""
    prompts = label_prompts or {}
    return [str(prompts.get(lab, lab)) for lab in labels]


def is_zero_shot(meta: Mapping[str, Any], dataset: str, labels: Sequence[str]) -> bool:
    """Whether evaluating a checkpoint (``meta``: its metadata) on ``dataset`` with class order
    ``labels`` is a zero-shot transfer: another dataset, or other classes or class order."""
    return meta.get("dataset") != dataset or list(meta.get("labels", [])) != list(labels)
