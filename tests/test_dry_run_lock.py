"""Dry runs say what they wrote, and write nothing while another run holds the lock.

The shard manifests are synced while the Snakefile is parsed (``dfer.pipeline``). A dry run
may write the manifests whose clips changed (so that it lists the jobs the real run will run)
and then says so in a line starting ``dry run:``. While another Snakemake run is executing in
the same directory (its lock files in ``.snakemake/locks``), nothing is written: not by a dry
run, and not by a second real run, which then stops at the lock.

The running workflow is stood in for by a lock file in Snakemake's own format listing the
shard manifests as a run's inputs; Snakemake itself must recognise it ("cannot be locked").
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from project_copy import copy_project

from dfer.core.sharding import shard_name, shard_of

NUM_SHARDS = 4


def snakemake(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", "--cores", "1", *args],
                          cwd=project, capture_output=True, text=True, timeout=300)


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: bytes and mtime (proof that nothing was written)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path) -> Path:
    """A synced demo project (1 clip per class) to which one clip was then added."""
    dest = tmp_path / "project"
    copy_project(dest, clips_per_class=1, sync=True)
    data = dest / "data" / "demo"
    shutil.copy2(data / "videos" / "happiness_000.mp4", data / "videos" / "happiness_900.mp4")
    with open(data / "manifest.csv", "a", encoding="utf-8") as fh:
        fh.write("happiness_900,videos/happiness_900.mp4,happiness,1\n")
    return dest


def hold_lock(project: Path) -> None:
    """What a running `snakemake` leaves in its working directory (FilePersistence.lock)."""
    locks = project / ".snakemake" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    manifests = [f"results/demo/manifest/shard-{shard_name(i)}.parquet" for i in range(NUM_SHARDS)]
    (locks / "0.input.lock").write_text("\n".join(manifests) + "\n")
    (locks / "0.output.lock").write_text("results/demo/frames/shard-000.parquet\n")


def test_dry_run_under_a_held_lock_writes_nothing_then_says_what_it_wrote(project):
    changed = shard_name(shard_of("happiness_900", NUM_SHARDS))
    results = project / "results"
    before = tree(results)
    hold_lock(project)

    dry = snakemake(project, "-n", "decode_all")
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    assert "cannot be locked" in out  # Snakemake sees a running workflow too
    assert "dry run: another Snakemake run holds the lock of this directory" in out, out[-3000:]
    assert f"a sync would write shard manifests {changed}" in out
    assert tree(results) == before  # not one byte, not one mtime

    real = snakemake(project, "decode_all")
    assert real.returncode != 0  # a second run stops at the lock ...
    assert "not synced: another Snakemake run holds the lock" in real.stdout + real.stderr
    assert tree(results) == before  # ... and has not touched the running run's inputs

    shutil.rmtree(project / ".snakemake" / "locks")  # the run ended
    dry = snakemake(project, "-n", "decode_all")
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    assert f"dry run: dataset demo: wrote its changed manifest files (shard manifests {changed})" in out
    after = tree(results)
    rewritten = {name for name in after if after[name] != before.get(name)}
    assert rewritten == {f"demo/manifest/shard-{changed}.parquet", "demo/manifest/manifest.parquet"}
    assert f"shard={changed}" in out  # and it lists that shard's decode job
