"""Shared caption servers: one ``vllm serve`` per GPU group, and the URL list clients use.

Why: with ``backend: vllm`` every caption shard job loads the model itself (FERV39k's 128
shards would load a 7B model 128 times, and 8 such jobs on one node fight over GPU 0). With
``backend: openai`` the shard jobs are light HTTP clients and the model is loaded once per
server; this module starts those servers: the GPUs are split into groups of
``tensor_parallel_size``, each group gets one ``vllm serve`` (``CUDA_VISIBLE_DEVICES`` set to
the group, port ``base + i``), run by the vLLM environment's interpreter
(:func:`dfer.captions.config.vllm_python`) with the settings of ``captions.vllm`` (model,
dtype, context, memory fraction, eager mode, ``engine_args`` as flags) and the served name,
frame limit and seed the clients of ``captions.openai`` expect. Once every server answers
``/health``, the URLs are printed and written as a config overlay (``captions.openai.base_url``
as a list) for ``snakemake TARGETS --configfile <overlay>``; the servers run until
the command gets SIGTERM / SIGINT (a SLURM job's end), then are stopped with their children.

``dfer serve-captions`` (:mod:`dfer.stages.serve_captions`) is the command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfer.captions.config import CaptionsConfig

#: The module ``vllm serve`` runs as (the ``vllm`` console script may be absent in a venv
#: whose vllm package is the CPU build; the module is always there).
VLLM_CLI = ("-m", "vllm.entrypoints.cli.main", "serve")


def visible_gpus(explicit: str | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids to serve on: ``explicit`` ("0,1,2,3"), else ``CUDA_VISIBLE_DEVICES`` (what a
    SLURM job or the local GPU placement gave this process), else every GPU ``nvidia-smi -L``
    lists. Raises ``ValueError`` when none can be found."""
    env = os.environ if env is None else env
    text = explicit if explicit is not None else env.get("CUDA_VISIBLE_DEVICES")
    if text is not None:
        ids = [g.strip() for g in text.split(",") if g.strip()]
        if ids:
            return ids
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False).stdout
        ids = [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
        if ids:
            return ids
    raise ValueError("no GPU to serve on: name them with --gpus 0,1,... (CUDA_VISIBLE_DEVICES "
                     "is unset and nvidia-smi lists none)")


def gpu_groups(gpus: Sequence[str], tensor_parallel_size: int) -> list[tuple[str, ...]]:
    """``gpus`` in consecutive groups of ``tensor_parallel_size``: one server each."""
    tp = int(tensor_parallel_size)
    if tp < 1 or not gpus or len(gpus) % tp:
        raise ValueError(f"{len(gpus)} GPU(s) ({','.join(gpus)}) cannot be split into groups of "
                         f"tensor_parallel_size={tp}")
    return [tuple(gpus[i:i + tp]) for i in range(0, len(gpus), tp)]


def _flag(key: str, value: Any) -> list[str]:
    """``engine_args`` entry as ``vllm serve`` flags: ``--key-with-dashes value``; True is a
    bare flag, False and None are left out, mappings and lists go as JSON."""
    name = "--" + str(key).replace("_", "-")
    if value is True:
        return [name]
    if value is False or value is None:
        return []
    if isinstance(value, (Mapping, list, tuple)):
        return [name, json.dumps(value, sort_keys=True)]
    return [name, str(value)]


def serve_command(python: str, cfg: CaptionsConfig, host: str, port: int,
                  tensor_parallel_size: int, extra: Sequence[str] = ()) -> list[str]:
    """The ``vllm serve`` command line of one server for the captions config ``cfg``."""
    v, o = cfg.raw["vllm"], cfg.raw["openai"]
    limit = {"image": cfg.num_frames} if o["input"] == "images" else {"video": 1}
    cmd = [python, *VLLM_CLI, str(v["model"]), "--host", host, "--port", str(port),
           "--served-model-name", str(o["model"]), "--dtype", str(v["dtype"]),
           "--max-model-len", str(v["max_model_len"]),
           "--gpu-memory-utilization", str(v["gpu_memory_utilization"]),
           "--tensor-parallel-size", str(int(tensor_parallel_size)),
           "--seed", str(cfg.raw["seed"]), "--limit-mm-per-prompt", json.dumps(limit)]
    if v["enforce_eager"]:
        cmd.append("--enforce-eager")
    for key, value in sorted((v.get("engine_args") or {}).items()):
        cmd += _flag(key, value)
    return [*cmd, *extra]


@dataclass
class Server:
    """One started server: its GPUs, URL, log file and process."""

    gpus: tuple[str, ...]
    port: int
    url: str
    command: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None


def plan_servers(cfg: CaptionsConfig, python: str, gpus: Sequence[str], tensor_parallel_size: int,
                 host: str, advertise: str, base_port: int, log_dir: Path,
                 extra: Sequence[str] = ()) -> list[Server]:
    """One :class:`Server` (not started) per GPU group, on ports ``base_port + i``."""
    out = []
    for i, group in enumerate(gpu_groups(gpus, tensor_parallel_size)):
        port = base_port + i
        out.append(Server(group, port, f"http://{advertise}:{port}/v1",
                          serve_command(python, cfg, host, port, tensor_parallel_size, extra),
                          log_dir / f"server-{i}-port-{port}.log"))
    return out


def start(server: Server, env: Mapping[str, str]) -> None:
    """Start one server in a session of its own (so that stopping it stops its children:
    vLLM's engine core and, with tensor parallelism, one worker per GPU)."""
    server.log.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(server.gpus)}
    with server.log.open("wb") as log:
        server.proc = subprocess.Popen(server.command, stdout=log, stderr=subprocess.STDOUT,
                                       env=child_env, start_new_session=True)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a server log (for error messages)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_healthy(servers: Sequence[Server], probe_host: str, timeout_s: float,
                 get: Callable[[str], int] | None = None) -> None:
    """Return once every server answers ``GET /health`` with 200; ``RuntimeError`` naming the
    server and its log's last lines when one exits first or ``timeout_s`` passes."""
    import httpx

    def status(url: str) -> int:
        return httpx.get(url, timeout=2.0).status_code

    get = get or status
    pending = list(servers)
    t0 = time.monotonic()
    while pending:
        for s in list(pending):
            if s.proc is not None and s.proc.poll() is not None:
                raise RuntimeError(f"vllm serve on GPU(s) {','.join(s.gpus)} (port {s.port}) exited "
                                   f"with status {s.proc.returncode} before it was healthy; last "
                                   f"lines of {s.log}:\n{log_tail(s.log)}")
            with contextlib.suppress(httpx.HTTPError, OSError):
                if get(f"http://{probe_host}:{s.port}/health") == 200:
                    pending.remove(s)
        if pending and time.monotonic() - t0 > timeout_s:
            s = pending[0]
            raise RuntimeError(f"vllm serve on GPU(s) {','.join(s.gpus)} (port {s.port}) not "
                               f"healthy after {timeout_s:.0f} s; last lines of {s.log}:\n{log_tail(s.log)}")
        if pending:
            time.sleep(0.5)


def stop(servers: Sequence[Server], grace_s: float = 30.0) -> None:
    """SIGTERM each server's process group, wait up to ``grace_s``, then SIGKILL what is left."""
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(s.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for s in servers:
        if s.proc is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            s.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(s.proc.pid, signal.SIGKILL)  # children that outlived the leader
        s.proc.wait()


def overlay(urls: Sequence[str]) -> dict[str, Any]:
    """The config overlay that points the captions stage at ``urls``."""
    return {"captions": {"backend": "openai", "openai": {"base_url": list(urls)}}}


def advertised_host(host: str) -> str:
    """The host name clients use: ``host`` itself, or this machine's name when the servers
    listen on every interface (a SLURM node: other nodes reach it by name)."""
    return socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
