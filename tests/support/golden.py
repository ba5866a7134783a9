"""Read the golden fixtures under ``tests/fixtures/golden/<method>/`` (made once from public code).

Each fixture folder holds ``golden.safetensors`` (inputs, intermediates, outputs), ``golden.json``
(seeds, constructor arguments and the sha256 of every tensor) and a README.md saying how they were
made. DFER-CLIP's weights are not stored: they are defined by a numbered normal generator
(:func:`draw_normal_weights`) whose rule and per-tensor sha256 are in ``golden.json``, because its
49408-row token table and its hard-wired 512-d temporal transformer would not fit a small
fixture. S2D's tiny weights are stored in ``weights.safetensors``.

The equivalence tests of each method's implementation load these, build our model, copy the
weights in by the name mapping of the README, and compare with the stored outputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
METHODS = ("dferclip", "cliper", "s2d")


def fixture_dir(method: str) -> Path:
    """The folder of ``method``'s fixture (one of :data:`METHODS`)."""
    if method not in METHODS:
        raise KeyError(f"no golden fixture for {method!r}; have {', '.join(METHODS)}")
    return GOLDEN / method


def load_meta(method: str) -> dict[str, Any]:
    """``golden.json`` of ``method``."""
    return json.loads((fixture_dir(method) / "golden.json").read_text())


def load_tensors(method: str, name: str = "golden.safetensors") -> dict[str, np.ndarray]:
    """One safetensors file of ``method``'s fixture as numpy arrays (no torch needed)."""
    return load_file(str(fixture_dir(method) / name))


def sha256_of(array: np.ndarray) -> str:
    """sha256 of the array's raw C-order bytes (little-endian, its own dtype)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def sha256_of_all(arrays: Iterable[np.ndarray]) -> str:
    """sha256 of the arrays' raw bytes concatenated in the given order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def draw_normal_weights(spec: Sequence[Mapping[str, Any]], seed: int) -> dict[str, np.ndarray]:
    """Re-create weights defined as ``mean + std * N(0,1)`` from one numpy PCG64 stream.

    ``spec`` is a list of ``{name, shape, mean, std}`` in draw order. For each entry with
    ``std > 0``: ``z = rng.standard_normal(prod(shape), dtype=float64)``, value =
    ``(mean + std * z).astype(float32).reshape(shape)``. An entry with ``std == 0`` draws nothing
    and is filled with ``mean``. This is the rule the DFER-CLIP fixture was made with; the caller
    checks the result against the recorded sha256 (numpy does not promise the stream forever).
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    out: dict[str, np.ndarray] = {}
    for entry in spec:
        shape = tuple(int(s) for s in entry["shape"])
        count = int(np.prod(shape)) if shape else 1
        if entry["std"] == 0:
            values = np.full(count, entry["mean"], dtype=np.float64)
        else:
            values = entry["mean"] + entry["std"] * rng.standard_normal(count, dtype=np.float64)
        out[entry["name"]] = values.astype(np.float32).reshape(shape)
    return out


def dferclip_weights(meta: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """DFER-CLIP fixture weights, re-created and checked against every recorded sha256.

    Keys are the public names: CLIP ``state_dict`` keys, ``temporal_net.*`` and
    ``prompt_learner.ctx`` (the 7-class context; the 11-class one is ``ctx_11`` in the tensors).
    """
    meta = meta or load_meta("dferclip")
    spec = meta["weights"]
    weights = draw_normal_weights(spec, meta["weight_seed"])
    for entry in spec:
        if sha256_of(weights[entry["name"]]) != entry["sha256"]:
            raise AssertionError(f"re-created DFER-CLIP weight {entry['name']} differs from the fixture's")
    if sha256_of_all(weights[e["name"]] for e in spec) != meta["weights_total_sha256"]:
        raise AssertionError("re-created DFER-CLIP weights differ from the fixture's (total sha256)")
    return weights
