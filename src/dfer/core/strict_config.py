"""Config sections to dataclasses, refusing unknown keys and values of the wrong type.

Every stage and the trainer read their settings this way: a misspelt key in
config/config.yaml must fail loudly with the known keys listed, never fall back to a
default silently. Types are checked against the dataclass annotations too, because YAML
turns slips into valid-looking values of another type (``lr: 1e-3`` is the *string*
``'1e-3'`` in YAML 1.1, ``max_epochs: "5"`` a string) that would otherwise fail deep inside a
job, after Snakemake has already deleted that job's previous outputs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar, Union

T = TypeVar("T")


def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field annotations of ``cls``; ``{}`` when they cannot be resolved."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation we cannot resolve is not checked (never a false error)
        return {}


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` (as YAML / JSON gives it) fits the annotation ``tp``.

    Deliberately forgiving where Python is: an int is a valid float, and a type this function
    does not know is accepted (the dataclass's own checks still run).
    """
    if tp is Any or tp is object:
        return True
    if tp is None or tp is type(None):
        return value is None
    if _is_union(tp):
        return any(matches(value, arg) for arg in typing.get_args(tp))
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(tp))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (dict, Mapping) or tp is dict:
        return isinstance(value, Mapping)
    if origin in (list, tuple) or tp in (list, tuple):
        return isinstance(value, list | tuple)
    return True


def describe(tp: Any) -> str:
    """The allowed values of ``tp`` in words: ``an integer``, ``one of 'hog', 'mmod'``."""
    if _is_union(tp):
        parts = [describe(arg) for arg in typing.get_args(tp)]
        return " or ".join(dict.fromkeys(parts))
    if tp is None or tp is type(None):
        return "null"
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp) or tp
    if origin in (dict, Mapping):
        return "a mapping"
    if origin in (list, tuple):
        return "a list"
    return getattr(tp, "__name__", str(tp))


def _hint(value: Any) -> str:
    """A nudge for the classic YAML slip: a number written so that YAML reads it as text."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return " (YAML reads this as text: write it unquoted, with a dot, e.g. 1.0e-3)"
    return ""


def check_types(cls: type, data: Mapping[str, Any], noun: str) -> None:
    """``ValueError("{noun} 'key' must be <allowed>, got <value>")`` for the first misfit."""
    hints = _type_hints(cls)
    for key, value in data.items():
        tp = hints.get(key)
        if tp is not None and not matches(value, tp):
            raise ValueError(f"{noun} {key!r} must be {describe(tp)}, got {value!r}{_hint(value)}")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, noun: str) -> T:
    """``cls(**data)``, or ``ValueError`` naming an unknown key or a value of the wrong type.

    Unknown keys: ``unknown {noun}(s) [...]; known: [...]``. Wrong types:
    ``{noun} 'key' must be an integer, got '5'``.
    """
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {noun}(s) {unknown}; known: {sorted(known)}")
    check_types(cls, data, noun)
    return cls(**data)


class StrictConfig:
    """Mixin of a dataclass config read from a user's mapping: ``from_dict`` refuses unknown
    keys and wrong types (:func:`from_mapping`, naming keys as ``{CONFIG_NOUN} 'key'``) and then
    runs the class's ``validate``; ``to_dict`` is the plain mapping written into checkpoints.
    One place, so every method's config reports a bad key the same way."""

    CONFIG_NOUN: ClassVar[str] = "config key"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Self:
        cfg = from_mapping(cls, data, cls.CONFIG_NOUN)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def validate(self) -> None:
        """Cross-key checks of the subclass (nothing by default)."""
