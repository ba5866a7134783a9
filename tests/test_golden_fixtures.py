"""The golden fixtures made from the public DFER-CLIP, CLIPER and S2D code are whole and as documented.

These tests do not compare any implementation: the equivalence tests of each method do that.
They guard the fixtures themselves: every file is there and small, every tensor loads with the
shape and dtype its README documents and the sha256 its ``golden.json`` recorded, DFER-CLIP's
generated weights re-create to the recorded sha256, and S2D's stored weights are the documented
tiny model.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from support.golden import (
    METHODS,
    dferclip_weights,
    fixture_dir,
    load_meta,
    load_tensors,
    sha256_of,
)

MAX_BYTES = 3 * 1024 * 1024
COMMITS = {
    "dferclip": "d10d5a4310a60c477778a086a292b591ee50e2ce",
    "cliper": "02a6713b6938966b3751392b53b7f98b09bcbad9",
    "s2d": "e1b5e5dfb57ab15f70103c933b346bfa62943159",
}
FILES = {
    "dferclip": ("README.md", "golden.json", "golden.safetensors", "side-env-freeze.txt"),
    "cliper": ("README.md", "golden.json", "golden.safetensors", "side-env-freeze.txt"),
    "s2d": ("README.md", "golden.json", "golden.safetensors", "weights.safetensors",
            "side-env-freeze.txt"),
}
ROW = re.compile(r"^\| `([^`]+)` \| \[([^\]]*)\] \| (\w+) \|")


def _readme_section(method: str, title: str) -> str:
    text = (fixture_dir(method) / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _documented_tensors(method: str) -> dict[str, tuple[list[str], str]]:
    """``name -> (shape as written, dtype)`` from the README's tensor table."""
    rows = {}
    for line in _readme_section(method, "Tensors").splitlines():
        match = ROW.match(line)
        if match:
            dims = [d.strip() for d in match.group(2).split(",")] if match.group(2).strip() else []
            rows[match.group(1)] = (dims, match.group(3))
    assert rows, f"{method}: no tensor table found in README"
    return rows


def _expected(method: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """The README's tensor table, with CLIPER's per-case ``B`` filled in from its case table."""
    rows = _documented_tensors(method)
    if method != "cliper":
        return {k: (tuple(int(d) for d in dims), dt) for k, (dims, dt) in rows.items()}
    cases = {m.group(1): int(m.group(2)) for m in
             re.finditer(r"^\| `(\w+)` \| (\d+) \|", _readme_section(method, "Cases"), re.M)}
    assert cases, "cliper: no case table found in README"
    return {f"{case}.{name}": (tuple(b if d == "B" else int(d) for d in dims), dt)
            for case, b in cases.items() for name, (dims, dt) in rows.items()}


@pytest.mark.parametrize("method", METHODS)
def test_fixture_files_present_small_and_sourced(method):
    """Every file is there, the folder is under 3 MB, the note names the full commit and the
    side environment's torch (and timm for S2D)."""
    folder = fixture_dir(method)
    for name in FILES[method]:
        assert (folder / name).is_file(), f"{method}: {name} missing"
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert total < MAX_BYTES, f"{method}: fixture is {total} bytes"
    assert COMMITS[method] in (folder / "README.md").read_text()
    freeze = (folder / "side-env-freeze.txt").read_text().splitlines()
    assert "torch==2.14.1" in freeze
    if method == "s2d":
        assert "timm==0.6.13" in freeze


@pytest.mark.parametrize("method", METHODS)
def test_tensors_as_documented_and_recorded(method):
    """The file holds exactly the README's tensors, with its shapes and dtypes, and each one's
    bytes hash to the sha256 recorded when the fixture was made."""
    tensors = load_tensors(method)
    recorded = load_meta(method)["tensors"]
    expected = _expected(method)
    assert set(tensors) == set(expected) == set(recorded)
    for name, array in tensors.items():
        shape, dtype = expected[name]
        assert array.shape == shape, f"{method}:{name} {array.shape} != README {shape}"
        assert array.dtype == np.dtype(dtype), f"{method}:{name} {array.dtype} != README {dtype}"
        assert list(array.shape) == recorded[name]["shape"]
        assert sha256_of(array) == recorded[name]["sha256"], f"{method}:{name} changed"
        if array.dtype.kind == "f":
            assert np.isfinite(array).all(), f"{method}:{name} has non-finite values"


def test_dferclip_weights_recreate_to_recorded_sha():
    """The generated DFER-CLIP weights re-create bit for bit, with the documented tiny shapes."""
    meta = load_meta("dferclip")
    weights = dferclip_weights(meta)
    assert len(weights) == 76
    assert sum(w.size for w in weights.values()) == 5_903_425
    assert weights["token_embedding.weight"].shape == (49408, 64)
    assert weights["visual.conv1.weight"].shape == (128, 3, 8, 8)
    assert weights["temporal_net.temporal_transformer.layers.0.0.fn.fn.to_qkv.weight"].shape == (1536, 512)
    assert weights["prompt_learner.ctx"].shape == (7, 8, 64)
    # the documented rule: a LayerNorm gain drawn around 1, the temporal CLS around N(0, 1)
    assert abs(float(weights["visual.ln_pre.weight"].mean()) - 1.0) < 0.05
    assert 0.8 < float(weights["temporal_net.pos_embedding"].std()) < 1.2
    tensors = load_tensors("dferclip")
    # the EOT index is where the largest token id (49407) sits, as the text encoder reads it
    for n in (7, 11):
        tokens = tensors[f"tokenized_prompts_{n}"]
        assert (tokens[np.arange(n), tensors[f"eot_index_{n}"]] == 49407).all()
        assert (tokens[:, 1:9] == tokens[0, 1]).all()  # the 8 "X" context placeholders


def test_s2d_weights_are_the_documented_tiny_model():
    """Stored S2D weights: both sets hash as recorded, 37,497 parameters, perturbation applied."""
    meta = load_meta("s2d")
    weights = load_tensors("s2d", "weights.safetensors")
    init = {k.removeprefix("init."): v for k, v in weights.items() if k.startswith("init.")}
    perturbed = {k.removeprefix("perturbed."): v for k, v in weights.items()
                 if k.startswith("perturbed.")}
    assert len(init) + len(perturbed) == len(weights)
    assert set(init) == set(perturbed) == set(meta["weights"])
    for key, array in init.items():
        assert sha256_of(array) == meta["weights"][key]["sha256"], key
        assert sha256_of(perturbed[key]) == meta["weights_perturbed_sha256"][key], key
        assert not np.array_equal(array, perturbed[key]), key
    assert sum(a.size for a in init.values()) == meta["params_total"] == 37_497
    assert init["prompt_blocks.0.fovea.smooth"].tolist() == [10.0]
    assert np.abs(init["prompt_blocks.0.TMA.T_Adapter.D_fc2.weight"]).max() > 0  # zero-init overwritten
    assert init["pos_embed"].shape == (1, 197, 32)
    assert init["patch_embed_prompt.proj.weight"].shape == (32, 8, 1, 1)
