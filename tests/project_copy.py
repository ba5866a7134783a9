"""A copy of the workflow with a small demo dataset, for tests that run Snakemake.

Tests run Snakemake on a copy so that they never touch the repository's own ``results/`` and
``data/``; the copy's demo dataset is kept small so that real runs stay fast.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from dfer.pipeline import prepare_datasets

REPO = Path(__file__).resolve().parents[1]
PROJECT_PARTS = ("Snakefile", "workflow", "config", "envs", "src")


def copy_project(dest: Path, clips_per_class: int, *, sync: bool = False) -> dict[str, Any]:
    """Copy the workflow into ``dest`` (created) with ``clips_per_class`` demo clips per class.

    ``sync``: also write the demo data and shard manifests now, as Snakemake would at parse
    time, so later runs do not rewrite manifests after a test has faked stage outputs.
    Returns the copy's config.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for part in PROJECT_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / part)
    cfg_path = dest / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["datasets"] = ["demo"]
    cfg["dataset_defs"]["demo"]["demo_clips_per_class"] = clips_per_class
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if sync:
        cwd = os.getcwd()
        os.chdir(dest)
        try:
            prepare_datasets(cfg)
        finally:
            os.chdir(cwd)
    return cfg
