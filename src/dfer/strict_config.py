"""Config sections to dataclasses, refusing unknown keys.

Every stage and the trainer read their settings this way: a misspelt key in
config/config.yaml must fail loudly with the known keys listed, never fall back to a
default silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, noun: str) -> T:
    """``cls(**data)``, or ``ValueError("unknown {noun}(s) [...]; known: [...]")``."""
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {noun}(s) {unknown}; known: {sorted(known)}")
    return cls(**data)
