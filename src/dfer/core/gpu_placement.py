"""GPUs of its own for every GPU job that Snakemake runs on this machine.

Snakemake caps how many GPU jobs run at once (the local profile's ``gpu`` resource) but does
not tell a job *which* GPU to use (snakemake/snakemake#281), so every job would pick GPU 0.
Here each job takes the GPUs it asked for from the machine's visible list and holds them for
its lifetime: one lock file per GPU, locked with ``flock``. The kernel drops such a lock when
the process that holds it ends, however it ends (exit, crash, SIGKILL), so a dead job never
leaves a GPU taken, and nothing has to be cleaned up.

The contract with the workflow (``workflow/rules/common.smk``, ``dfer_command``):

* a rule whose job asks for ``resources: gpu=N`` (N > 0) and that Snakemake runs itself (a
  local executor) starts ``python -m dfer`` with ``DFER_JOB_GPUS=N`` in its environment;
* ``python -m dfer`` calls :func:`place_job` first thing, before anything imports torch or
  CUDA: it takes N free GPUs, sets ``CUDA_VISIBLE_DEVICES`` to them and ``DFER_GPUS_PLACED``
  to the same list, and keeps the lock files open until the process exits;
* child processes (Lightning's DDP ranks re-launched with the same command, vLLM workers,
  DataLoader workers) inherit both variables and do not place again.

Jobs submitted through a cluster executor (SLURM) never get ``DFER_JOB_GPUS``: the scheduler's
assignment stands. ``gpu=0`` jobs are left alone.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: How many GPUs this machine offers the workflow (``0``: none); overrides what is detected.
LOCAL_GPUS_ENV = "DFER_LOCAL_GPUS"
#: Set by a rule for a job Snakemake runs on this machine: the number of GPUs it asked for.
JOB_GPUS_ENV = "DFER_JOB_GPUS"
#: Set by :func:`place_job` to the ids it took; a child process that sees it inherits the
#: placement instead of taking GPUs of its own.
PLACED_ENV = "DFER_GPUS_PLACED"
#: Folder of the per-GPU lock files (default: ``dfer-gpu-locks-<uid>`` in the temp folder).
LOCK_DIR_ENV = "DFER_GPU_LOCK_DIR"
#: Seconds a job waits for enough free GPUs before it gives up (default 3600).
WAIT_ENV = "DFER_GPU_WAIT_S"
DEFAULT_WAIT_S = 3600.0


class GpuPlacementError(RuntimeError):
    """A job cannot get the GPUs it asked for (more than the machine has, or a time-out)."""


def listed_devices(value: str) -> list[str]:
    """Entries of a ``CUDA_VISIBLE_DEVICES`` value; ``-1`` and blanks are not devices."""
    return [d.strip() for d in value.split(",") if d.strip() and d.strip() != "-1"]


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ids of the GPUs jobs on this machine may use, in order, without importing torch.

    ``$CUDA_VISIBLE_DEVICES`` when set (a parent ``3,5,6,7`` gives exactly those ids); else
    ``0..N-1`` for the NVIDIA device files ``/dev/nvidia0``, ``/dev/nvidia1``, ... (not
    ``/dev/nvidiactl``, which a container without a GPU may still have). ``$DFER_LOCAL_GPUS``
    pins the count: the first N of ``CUDA_VISIBLE_DEVICES`` when that is set, else ``0..N-1``.
    """
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    listed = listed_devices(visible) if visible is not None else None
    pinned = env.get(LOCAL_GPUS_ENV, "").strip()
    if pinned:
        try:
            count = int(pinned)
        except ValueError:
            raise ValueError(f"{LOCAL_GPUS_ENV}={pinned!r} is not a number of GPUs") from None
        if count < 0:
            raise ValueError(f"{LOCAL_GPUS_ENV}={pinned!r} is negative")
        if listed is None:
            return [str(i) for i in range(count)]
        if count > len(listed):
            raise ValueError(f"{LOCAL_GPUS_ENV}={count} but CUDA_VISIBLE_DEVICES={visible!r} "
                             f"lists {len(listed)} GPU(s)")
        return listed[:count]
    if listed is not None:
        return listed
    devices = [p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", p)]
    return [str(i) for i in range(len(devices))]


def local_gpu_count(environ: Mapping[str, str] | None = None) -> int:
    """How many GPUs jobs run on this machine may use (``len(visible_gpus())``).

    The one GPU check of the workflow: the rules' ``gpu`` resources (``auto`` backends ask for
    a GPU where one is found) and the local profile's ``gpu`` limit both call it.
    """
    return len(visible_gpus(environ))


def default_lock_dir() -> Path:
    """``$DFER_GPU_LOCK_DIR``, else ``<temp folder>/dfer-gpu-locks-<uid>``.

    One folder per user by default; users who share a machine's GPUs point the variable at
    one folder they can all write (the lock files are created world-readable and writable).
    """
    configured = os.environ.get(LOCK_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"dfer-gpu-locks-{os.getuid()}"


def _lock_file(lock_dir: Path, gpu: str) -> Path:
    """One lock file per GPU id (ids may be UUIDs such as ``GPU-8f0c...`` or ``MIG-...``)."""
    return lock_dir / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.lock"


def _open_lock(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: reading is enough to lock it
        return os.open(path, os.O_RDONLY)
    if os.fstat(fd).st_uid == os.getuid():
        # the creation mode is narrowed by the umask (0o644 under the usual 022): widen it, so
        # that another user sharing the folder can write the holder note too
        os.fchmod(fd, 0o666)
    return fd


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _note_holder(fd: int) -> None:
    """Write this process id into a lock file just taken (what ``holders`` reports)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:  # opened read-only: the lock holds all the same
        pass


@dataclass
class Placement:
    """GPUs held by this process: the ids and the open, locked lock files."""

    gpus: list[str]
    fds: list[int] = field(default_factory=list)

    def release(self) -> None:
        """Give the GPUs back (closing the files drops the locks); process exit does the same."""
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def acquire(count: int, gpus: Sequence[str], lock_dir: Path | None = None,
            wait_s: float | None = None, poll_s: float = 0.2) -> Placement:
    """Take ``count`` GPUs of ``gpus`` that no other process holds; wait while too few are free.

    All or nothing: a job that finds fewer free GPUs than it needs lets go of those it took and
    tries again a little later, so two 2-GPU jobs can never each hold one GPU and wait for the
    other. Raises :class:`GpuPlacementError` when ``count`` exceeds ``len(gpus)`` or after
    ``wait_s`` seconds (``$DFER_GPU_WAIT_S``, default 3600).
    """
    if count > len(gpus):
        raise GpuPlacementError(f"a job asked for {count} GPU(s) but this machine offers "
                                f"{len(gpus)} ({', '.join(gpus) or 'none'})")
    lock_dir = default_lock_dir() if lock_dir is None else Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    if wait_s is None:
        wait_s = float(os.environ.get(WAIT_ENV, DEFAULT_WAIT_S))
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        taken: list[tuple[str, int]] = []
        for gpu in gpus:
            fd = _open_lock(_lock_file(lock_dir, gpu))
            if _try_lock(fd):
                taken.append((gpu, fd))
                if len(taken) == count:
                    break
            else:
                os.close(fd)
        if len(taken) == count:
            for _gpu, fd in taken:
                _note_holder(fd)
            return Placement([g for g, _ in taken], [fd for _, fd in taken])
        for _gpu, fd in taken:
            os.close(fd)
        if time.monotonic() >= deadline:
            busy = {g: pid for g, pid in holders(gpus, lock_dir).items() if pid is not None}
            raise GpuPlacementError(
                f"no {count} free GPU(s) of {', '.join(gpus)} after {wait_s:.0f} s; held by "
                + ", ".join(f"GPU {g}: pid {p}" for g, p in busy.items()))
        if not said:
            print(f"dfer: waiting for {count} free GPU(s) of {', '.join(gpus)}", file=sys.stderr)
            said = True
        time.sleep(poll_s * (0.5 + random.random()))


def holders(gpus: Sequence[str], lock_dir: Path | None = None) -> dict[str, int | None]:
    """GPU id -> the process id holding it, or None when it is free (``dfer gpus``)."""
    lock_dir = default_lock_dir() if lock_dir is None else Path(lock_dir)
    out: dict[str, int | None] = {}
    for gpu in gpus:
        path = _lock_file(lock_dir, gpu)
        if not path.exists():
            out[gpu] = None
            continue
        fd = _open_lock(path)
        try:
            if _try_lock(fd):
                out[gpu] = None
            else:
                text = path.read_text().strip()
                out[gpu] = int(text) if text.isdigit() else -1
        finally:
            os.close(fd)
    return out


#: The placement of this process, kept so that its lock files stay open until it exits.
_HELD: Placement | None = None


def place_job(environ: MutableMapping[str, str] | None = None) -> Placement | None:
    """Give this job the GPUs it asked for (``$DFER_JOB_GPUS``); call before CUDA starts.

    Does nothing for a job that asked for none, for a child of a placed job (it inherits
    ``CUDA_VISIBLE_DEVICES``), or on a machine that shows no GPU. Otherwise sets
    ``CUDA_VISIBLE_DEVICES`` to GPUs no other job holds, says which on stderr and keeps them
    until the process ends.
    """
    global _HELD
    env = os.environ if environ is None else environ
    wanted = env.get(JOB_GPUS_ENV, "").strip()
    if not wanted or wanted == "0":
        return None
    try:
        count = int(wanted)
    except ValueError:
        raise GpuPlacementError(f"{JOB_GPUS_ENV}={wanted!r} is not a number of GPUs") from None
    if env.get(PLACED_ENV):
        # a DDP rank or worker of a placed job: its GPUs are held by the job's process (even
        # where a launcher narrowed CUDA_VISIBLE_DEVICES to one of them for this rank)
        return None
    gpus = visible_gpus(env)
    if not gpus:
        log.info("%s=%d but this machine shows no GPU: nothing to place", JOB_GPUS_ENV, count)
        return None
    placement = acquire(count, gpus)
    ids = ",".join(placement.gpus)
    env["CUDA_VISIBLE_DEVICES"] = ids
    env[PLACED_ENV] = ids
    print(f"dfer: this job runs on GPU(s) {ids} (of {','.join(gpus)})", file=sys.stderr)
    if environ is None:
        _HELD = placement
    return placement


def exec_placed(argv: list[str], environ: MutableMapping[str, str] | None = None) -> None:
    """Place this job's GPUs (``$DFER_JOB_GPUS``), then replace this process with ``argv``.

    For GPU programs that are not ``python -m dfer`` (e.g. ``vllm serve``): the lock files
    stay open across ``exec`` (same process id), so the program holds its GPUs for its lifetime
    and a kill frees them, exactly as for a dfer job. ``python -m dfer.core.gpu_placement CMD``.
    """
    placement = place_job(environ)
    if placement is not None:
        for fd in placement.fds:
            os.set_inheritable(fd, True)
    env = os.environ if environ is None else environ
    os.execvpe(argv[0], argv, dict(env))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: DFER_JOB_GPUS=N python -m dfer.core.gpu_placement COMMAND [ARGS...]")
    try:
        exec_placed(sys.argv[1:])
    except GpuPlacementError as exc:
        sys.exit(f"dfer: {exc}")
