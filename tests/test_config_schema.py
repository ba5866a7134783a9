"""The config schema (workflow/schemas/config.schema.yaml) rejects bad configs, naming the key.

Validated as the Snakefile does, with ``snakemake.utils.validate``, starting from the shipped
config/config.yaml (which must pass) and breaking one thing at a time.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_shipped_config_is_valid_and_gets_defaults(config: dict) -> None:
    cfg = copy.deepcopy(config)
    cfg["decode"] = {}
    validate(cfg, SCHEMA)  # set_default=True: the schema's defaults are filled in
    assert cfg["decode"]["num_frames"] == 16 and cfg["decode"]["on_no_face"] == "center"


def _dataset(cfg: dict) -> dict:
    return cfg["dataset_defs"][next(iter(cfg["dataset_defs"]))]


DS = "['dataset_defs']['demo']"


@pytest.mark.parametrize(("break_it", "words"), [
    # unknown keys: the message names the stray key
    (lambda c: c.update(reslts="x"), ["Additional properties are not allowed ('reslts' was unexpected)"]),
    (lambda c: c["decode"].update(num_frame=8), ["('num_frame' was unexpected)", "instance['decode']"]),
    (lambda c: _dataset(c).update(shards=2), ["('shards' was unexpected)", f"instance{DS}"]),
    # wrong type / out of range / not allowed: the message gives the key's path and the rule
    (lambda c: c["decode"].update(num_frames="16"),
     ["'16' is not of type 'integer'", "instance['decode']['num_frames']"]),
    (lambda c: c["decode"].update(size=8), ["8 is less than the minimum of 16", "instance['decode']['size']"]),
    (lambda c: c["decode"].update(on_no_face="skip"), ["'skip' is not one of", "instance['decode']['on_no_face']"]),
    (lambda c: _dataset(c).update(num_shards=0),
     ["0 is less than the minimum of 1", f"instance{DS}['num_shards']"]),
    (lambda c: _dataset(c).update(on_missing="ignore"), ["'ignore' is not one of", f"instance{DS}['on_missing']"]),
    (lambda c: c.update(datasets=[]), ["[] should be non-empty", "instance['datasets']"]),
    (lambda c: c.pop("results"), ["'results' is a required property"]),
])
def test_bad_config_is_rejected_naming_the_key(config: dict, break_it, words: list[str]) -> None:
    cfg = copy.deepcopy(config)
    cfg.setdefault("decode", {})
    break_it(cfg)
    with pytest.raises(WorkflowError) as info:
        validate(cfg, SCHEMA)
    message = str(info.value)
    for word in words:
        assert word in message, message
