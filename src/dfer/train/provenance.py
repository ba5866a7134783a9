"""One provenance per stage and dataset: training refuses shards made by different setups.

Every shard artifact records how it was made (``backend``, ``model``, ``params``: see
:func:`dfer.core.artifacts.provenance`). Shards of one dataset can disagree when ``backend: auto``
chose differently on different machines (FAN on a GPU node, dlib on a CPU node), or when some
shards are left over from an earlier setting. A model trained on such a mixture learns from two
kinds of landmarks or parsing maps at once and its result belongs to neither setup, so training
and evaluation stop instead, naming the shards and both values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dfer.core.artifacts import read_meta
from dfer.core.paths import PARQUET
from dfer.train.inputs import KINDS, DataInputs

__all__ = ["COMPARED", "MixedProvenanceError", "check_consistent"]

#: Provenance fields that must agree between the shards of one stage.
COMPARED = ("backend", "model", "params")

#: stage -> input kind whose ``.parquet`` metadata holds its provenance
STAGE_KINDS: dict[str, str] = {stage: kind for kind, (stage, _) in KINDS.items()}


class MixedProvenanceError(ValueError):
    """Shards of one stage of a dataset were made with different backends, models or params."""


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Readable ``key: a != b`` lines; nested params are compared key by key."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.') or 'value'}: {a!r} != {b!r}"]


def check_consistent(inputs: DataInputs, stages: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The provenance every shard of each stage shares; raise when two shards disagree.

    Reads the ``.parquet`` of each stage among the job's declared ``inputs`` (a stage with no
    declared files is left out). Returns, per stage that has files, ``backend``, ``model`` and, where the stage
    records one, ``backend_choice`` (what ``auto`` chose and why) of the first shard.
    """
    out: dict[str, dict[str, Any]] = {}
    dataset = inputs.dataset
    for stage in stages:
        kind = STAGE_KINDS[stage]
        if not inputs.has(kind):
            continue
        first: tuple[str, Path, dict[str, Any]] | None = None
        for shard in inputs.shards:
            path = inputs.path(kind, shard, PARQUET)
            meta = read_meta(path)
            if first is None:
                first = (shard, path, meta)
                continue
            for key in COMPARED:
                if meta.get(key) != first[2].get(key):
                    diff = "; ".join(_differences(first[2].get(key), meta.get(key)))
                    raise MixedProvenanceError(
                        f"{dataset}: {stage} shards {first[0]} and {shard} were made with "
                        f"different {key} ({diff}; {first[1]} vs {path}). Re-run the {stage} "
                        f"stage for every shard with one setting (pin {stage}.backend rather "
                        "than auto when jobs run on different machines)."
                    )
        if first is not None:
            meta = first[2]
            record = {"backend": meta.get("backend"), "model": meta.get("model")}
            if "backend_choice" in meta:
                record["backend_choice"] = meta["backend_choice"]
            out[stage] = record
    return out

