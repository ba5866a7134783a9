"""GPUs of its own for every GPU job on one machine (dfer.core.gpu_placement).

Simulated on the CPU: ``DFER_LOCAL_GPUS=4`` stands for a 4-GPU machine, and the stand-in job
``tests/support/gpu_probe.py`` starts like every ``python -m dfer`` job (``dfer.cli.main``
places first) and logs the ``CUDA_VISIBLE_DEVICES`` it was given. Nothing here needs CUDA:
placement is decided before torch is imported, from lock files.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dfer.core.gpu_placement import (
    GpuPlacementError,
    acquire,
    holders,
    local_gpu_count,
    place_job,
    visible_gpus,
)

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "support" / "gpu_probe.py"
PLACEMENT_ENV = ("DFER_LOCAL_GPUS", "CUDA_VISIBLE_DEVICES", "DFER_JOB_GPUS", "DFER_GPUS_PLACED",
                 "DFER_GPU_LOCK_DIR", "DFER_GPU_WAIT_S")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PLACEMENT_ENV}
    env["PYTHONPATH"] = str(REPO / "src")
    env.update(extra)
    return env


def read_log(log: Path) -> dict[str, dict]:
    """job name -> {ids, start, end, pid} from the probes' start / end lines."""
    jobs: dict[str, dict] = {}
    for line in log.read_text().splitlines():
        kind, name, ids, clock, pid = line.split()
        job = jobs.setdefault(name, {"ids": ids, "pid": int(pid)})
        assert job["ids"] == ids, (name, job["ids"], ids)  # the same GPUs from start to end
        job[kind] = float(clock)
    return jobs


def test_visible_gpus_map_onto_the_parent_list():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3,5,6,7"}) == ["3", "5", "6", "7"]
    assert visible_gpus({"DFER_LOCAL_GPUS": "4"}) == ["0", "1", "2", "3"]
    assert visible_gpus({"DFER_LOCAL_GPUS": "2", "CUDA_VISIBLE_DEVICES": "3,5,6,7"}) == ["3", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aa, -1,GPU-bb"}) == ["GPU-aa", "GPU-bb"]
    assert visible_gpus({"DFER_LOCAL_GPUS": "0", "CUDA_VISIBLE_DEVICES": "0,1"}) == []
    assert local_gpu_count({"CUDA_VISIBLE_DEVICES": ""}) == 0
    with pytest.raises(ValueError, match="DFER_LOCAL_GPUS=3 but CUDA_VISIBLE_DEVICES='0,1'"):
        visible_gpus({"DFER_LOCAL_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0,1"})


def test_place_job_takes_free_gpus_of_the_parent_list_and_leaves_others_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("DFER_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("DFER_GPU_WAIT_S", "2")  # a wrong second placement fails, not hangs
    held = acquire(1, ["5"], tmp_path)  # another job holds GPU 5
    env = {"CUDA_VISIBLE_DEVICES": "3,5,6,7", "DFER_JOB_GPUS": "2"}
    try:
        placement = place_job(env)
        assert placement is not None and placement.gpus == ["3", "6"]
        assert env["CUDA_VISIBLE_DEVICES"] == "3,6" and env["DFER_GPUS_PLACED"] == "3,6"
        assert holders(["3", "5", "6", "7"], tmp_path) == {
            "3": os.getpid(), "5": os.getpid(), "6": os.getpid(), "7": None}
        # a child of the placed job (same env) inherits: no second placement, nothing taken
        assert place_job(dict(env)) is None
        # gpu=0 jobs and jobs without the variable are untouched
        for untouched in ({"CUDA_VISIBLE_DEVICES": "3,5"}, {"DFER_JOB_GPUS": "0", "CUDA_VISIBLE_DEVICES": "3"}):
            before = dict(untouched)
            assert place_job(untouched) is None and untouched == before
        placement.release()
    finally:
        held.release()
    with pytest.raises(GpuPlacementError, match="asked for 5 GPU"):
        acquire(5, ["0", "1", "2", "3"], tmp_path)


def test_a_killed_job_releases_its_gpus(tmp_path):
    log = tmp_path / "log.txt"
    env = clean_env(DFER_LOCAL_GPUS="4", DFER_JOB_GPUS="3", DFER_GPU_LOCK_DIR=str(tmp_path / "locks"))
    job = subprocess.Popen([sys.executable, str(PROBE), "probe", "--log", str(log), "--name", "victim",
                            "--seconds", "60"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (log.exists() and log.read_text()):
            assert job.poll() is None and time.monotonic() < deadline, job.stderr.read()
            time.sleep(0.05)
        ids = read_log(log)["victim"]["ids"].split(",")
        assert len(ids) == 3 and len(set(ids)) == 3
        gpus = ["0", "1", "2", "3"]
        owners = holders(gpus, tmp_path / "locks")
        assert {g for g, pid in owners.items() if pid == job.pid} == set(ids)
        with pytest.raises(GpuPlacementError, match="no 2 free GPU"):
            acquire(2, gpus, tmp_path / "locks", wait_s=0.3, poll_s=0.05)
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=10)
        every = acquire(4, gpus, tmp_path / "locks", wait_s=0)  # free at once, nothing to clean
        assert every.gpus == gpus
        every.release()
    finally:
        job.kill()
        job.wait()
        job.stderr.close()


def test_child_processes_inherit_the_placement(tmp_path):
    """A DDP rank or engine worker re-launched by the job sees the same GPUs and takes none
    (with one GPU on the machine, a second placement would wait for the parent forever)."""
    log = tmp_path / "log.txt"
    env = clean_env(DFER_LOCAL_GPUS="1", DFER_JOB_GPUS="1", DFER_GPU_LOCK_DIR=str(tmp_path),
                    DFER_GPU_WAIT_S="5")
    proc = subprocess.run([sys.executable, str(PROBE), "probe", "--log", str(log), "--name", "p",
                           "--seconds", "0", "--child"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    jobs = read_log(log)
    assert jobs["p"]["ids"] == jobs["p.child"]["ids"] == "0"
    assert "dfer: this job runs on GPU(s) 0 (of 0)" in proc.stderr
    assert proc.stderr.count("runs on GPU") == 1  # the child did not place again


SNAKEFILE = """
JOBS = {{f"j{{i:02d}}": 2 if i % 3 == 0 else 1 for i in range(12)}}


rule all:
    input:
        expand("done/{{j}}", j=JOBS),


rule job:
    output:
        "done/{{j}}",
    resources:
        gpu=lambda wildcards: JOBS[wildcards.j],
    shell:
        "DFER_JOB_GPUS={{resources.gpu}} {python} {probe} probe --log log.txt --name {{wildcards.j}}"
        " --seconds 0.4 && touch {{output}}"
"""


def test_a_dozen_concurrent_jobs_never_share_a_gpu(tmp_path):
    """12 jobs (8 x gpu=1, 4 x gpu=2) on a simulated 4-GPU machine, as many at once as the
    local profile's `gpu` limit allows: overlapping jobs hold disjoint ids."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(python=sys.executable, probe=PROBE))
    env = clean_env(DFER_LOCAL_GPUS="4", DFER_GPU_LOCK_DIR=str(tmp_path / "locks"))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "12", "--resources", "gpu=4", "--scheduler", "greedy",
                           "--nocolor", "--quiet"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = read_log(tmp_path / "log.txt")
    assert len(jobs) == 12
    for name, job in jobs.items():
        ids = job["ids"].split(",")
        want = 2 if int(name[1:]) % 3 == 0 else 1
        assert len(ids) == want and len(set(ids)) == want, (name, ids)
        assert set(ids) <= {"0", "1", "2", "3"}, (name, ids)
    overlaps = 0
    for (a, ja), (b, jb) in itertools.combinations(sorted(jobs.items()), 2):
        if ja["start"] < jb["end"] and jb["start"] < ja["end"]:
            overlaps += 1
            assert not set(ja["ids"].split(",")) & set(jb["ids"].split(",")), (a, ja, b, jb)
    assert overlaps >= 6, overlaps  # jobs did run side by side: the check above had work to do


def test_any_command_can_run_on_placed_gpus_and_keeps_them_until_it_ends(tmp_path):
    """`python -m dfer.core.gpu_placement CMD` (e.g. for `vllm serve`): the command itself,
    after exec (same pid), holds its GPUs; killing it frees them."""
    ready = tmp_path / "ready"
    env = clean_env(DFER_LOCAL_GPUS="2", DFER_JOB_GPUS="1", DFER_GPU_LOCK_DIR=str(tmp_path / "locks"))
    held = acquire(1, ["0"], tmp_path / "locks")  # GPU 0 is another job's
    server = subprocess.Popen(
        [sys.executable, "-m", "dfer.core.gpu_placement", "sh", "-c",
         f'echo "$CUDA_VISIBLE_DEVICES" > {ready}; exec sleep 60'], env=env)
    try:
        deadline = time.monotonic() + 30
        while not (ready.exists() and ready.read_text()):
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert ready.read_text().strip() == "1"
        assert holders(["0", "1"], tmp_path / "locks") == {"0": os.getpid(), "1": server.pid}
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        assert holders(["0", "1"], tmp_path / "locks") == {"0": os.getpid(), "1": None}
    finally:
        held.release()
        server.kill()
        server.wait()


def test_lock_files_are_writable_by_others_whatever_the_umask(tmp_path):
    """Under the usual umask 022 a created lock file would be 0o644, so another user sharing
    ``DFER_GPU_LOCK_DIR`` could only read it; the creator widens it to 0o666."""
    old = os.umask(0o022)
    try:
        placement = acquire(1, ["0", "1"], tmp_path)
    finally:
        os.umask(old)
    try:
        [lock] = list(tmp_path.glob("gpu-*.lock"))
        assert lock.stat().st_mode & 0o777 == 0o666
    finally:
        placement.release()
