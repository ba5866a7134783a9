# Shared helpers for every rule file. Parsing this file prepares the datasets: it writes the
# demo data when configured and missing, and syncs each dataset's shard manifests, rewriting a
# shard manifest only when its clips changed, so Snakemake re-runs exactly the changed shards.

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
# Jobs run `python -m dfer`: make that the interpreter running Snakemake (the project venv)
# unless a per-rule conda env is activated, which puts its own python first.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

from dfer.pipeline import prepare_datasets  # noqa: E402

RESULTS = config["results"]
DATASETS = list(config["datasets"])
SHARDS = prepare_datasets(config)  # dataset -> ["000", "001", ...]
PY = "python -m dfer"


wildcard_constraints:
    dataset="|".join(DATASETS) if DATASETS else "NONE",
    shard=r"\d{3}",


def section_json(section):
    """A config section as canonical JSON: the `params` that re-trigger a stage when edited."""
    return json.dumps(config.get(section, {}), sort_keys=True)


def shard_targets(pattern):
    """`pattern` (with {results}, {dataset}, {shard}) expanded over every dataset's shards."""
    return [
        pattern.format(results=RESULTS, dataset=ds, shard=s)
        for ds in DATASETS
        for s in SHARDS[ds]
    ]


# Stage rule files append their final targets here; `rule all` asks for all of them.
TARGETS = []


def all_targets(wildcards):
    return TARGETS
