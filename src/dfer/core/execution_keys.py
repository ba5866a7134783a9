"""Where a job runs is not what it computes: splitting a config section in two.

Every stage's config module lists the keys of its section that only decide where or how fast
a job runs (device, workers, speed-only batch sizes, server URLs, concurrency, parallelism):
its ``EXECUTION_KEYS``. The workflow gives a job its whole section, but only the other keys,
the *result keys*, are the rule's ``params`` that Snakemake compares to decide what re-runs,
so moving a stage to another GPU or server re-runs nothing while a key that changes results
still re-runs that stage. Keys are dotted for nested sections (``openai.base_url``).

Only the standard library is imported: the Snakefile splits sections while it is parsed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any


def _pop(section: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """Remove ``dotted`` from ``section`` (in place); (found, value)."""
    *parents, leaf = dotted.split(".")
    node: Any = section
    for key in parents:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            return False, None
        node = node[key]
    if not isinstance(node, dict) or leaf not in node:
        return False, None
    return True, node.pop(leaf)


def _put(section: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = section
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def split(section: Mapping[str, Any] | None,
          execution_keys: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(result part, execution part)`` of a config section; the section is not changed.

    A key in neither part is simply not set. Sub-sections left empty by the split are kept
    (``{"openai": {}}``), so the result part of a section always has the same shape.
    """
    result = copy.deepcopy(dict(section or {}))
    execution: dict[str, Any] = {}
    for key in execution_keys:
        found, value = _pop(result, key)
        if found:
            _put(execution, key, value)
    return result, execution


def result_part(section: Mapping[str, Any] | None, execution_keys: Iterable[str]) -> dict[str, Any]:
    """The keys of ``section`` that change what its jobs compute (the rule's ``params``)."""
    return split(section, execution_keys)[0]
