"""``dfer serve-captions``: start one ``vllm serve`` per GPU group for the captions stage,
print the URL list and write it as a config overlay, then serve until stopped.

    dfer serve-captions --gpus 0,1,2,3,4,5,6,7 --urls-file results/caption-servers.yaml
    snakemake captions_all --cores 16 --configfile results/caption-servers.yaml

See :mod:`dfer.captions.serve` and docs/captions.md ("Many servers").
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from pathlib import Path

import yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", type=Path, default=None,
                        help="pipeline config (its `captions` section); repeat to overlay files in "
                             "order as snakemake's --configfile does (default: config/config.yaml)")
    parser.add_argument("--gpus", default=None,
                        help="GPU ids, comma-separated (default: $CUDA_VISIBLE_DEVICES, else every "
                             "GPU nvidia-smi lists)")
    parser.add_argument("--tensor-parallel-size", type=int, default=None, metavar="K",
                        help="GPUs per server (default: captions.vllm.tensor_parallel_size)")
    parser.add_argument("--host", default="0.0.0.0",
                        help="interface the servers listen on (default 0.0.0.0: reachable from "
                             "other nodes)")
    parser.add_argument("--advertise", default=None, metavar="HOST",
                        help="host name written into the URLs (default: --host, or this "
                             "machine's name when --host is 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8000, help="port of the first server; "
                        "server i listens on port + i (default 8000)")
    parser.add_argument("--urls-file", type=Path, default=None, metavar="YAML",
                        help="write the config overlay (captions.openai.base_url: [...]) here")
    parser.add_argument("--log-dir", type=Path, default=Path("logs/serve-captions"),
                        help="one log file per server (default logs/serve-captions)")
    parser.add_argument("--start-timeout", type=float, default=1800.0, metavar="S",
                        help="seconds a server may take to become healthy (default 1800: a 7B "
                             "model's first load, with the hub download, can take minutes)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each server's GPUs, URL and command; start nothing")
    parser.add_argument("extra", nargs=argparse.REMAINDER,
                        help="after --: more arguments for every `vllm serve`")


def _config(paths: list[Path] | None) -> dict:
    from dfer.stages.manifest import merge_configs

    base = Path("config/config.yaml")
    files = list(paths or [])
    if base.exists() and base not in files:
        files = [base, *files]
    return merge_configs(files) if files else {}


def run(args: argparse.Namespace) -> int:
    import os

    from dfer.captions import serve
    from dfer.captions.config import CaptionsConfig, vllm_python
    from dfer.core.artifacts import write_bytes_atomic

    extra = [a for a in (args.extra or []) if a != "--"]
    try:
        section = _config(args.config).get("captions") or {}
        cfg = CaptionsConfig.from_params(section)
        tp = args.tensor_parallel_size or int(cfg.raw["vllm"]["tensor_parallel_size"])
        gpus = serve.visible_gpus(args.gpus)
        python = vllm_python(cfg.raw)
        if python is None:
            raise ValueError("no vLLM environment: build it (scripts/setup_vllm_env.sh) or set "
                             "captions.vllm.python / $DFER_VLLM_PYTHON")
        advertise = args.advertise or serve.advertised_host(args.host)
        servers = serve.plan_servers(cfg, python, gpus, tp, args.host, advertise, args.port,
                                     args.log_dir, extra)
    except ValueError as exc:
        print(f"dfer serve-captions: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for s in servers:
            print(f"GPU {','.join(s.gpus)} -> {s.url}: CUDA_VISIBLE_DEVICES={','.join(s.gpus)} "
                  + shlex.join(s.command))
        return 0

    stopping = {"signal": None}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    env = dict(os.environ)
    key_env = str(cfg.raw["openai"].get("api_key_env") or "")
    if env.get(key_env):
        env["VLLM_API_KEY"] = env[key_env]  # the servers demand the key the clients send
    probe = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    try:
        for s in servers:
            serve.start(s, env)
            print(f"starting vllm serve on GPU(s) {','.join(s.gpus)}, port {s.port} (log {s.log})",
                  file=sys.stderr, flush=True)
        serve.wait_healthy(servers, probe, args.start_timeout)
        urls = [s.url for s in servers]
        if args.urls_file is not None:
            write_bytes_atomic(args.urls_file, yaml.safe_dump(serve.overlay(urls), sort_keys=False).encode())
        print("captions servers ready (captions.openai.base_url):", flush=True)
        for url in urls:
            print(url, flush=True)
        if args.urls_file is not None:
            print(f"overlay written: {args.urls_file} (snakemake TARGETS --configfile "
                  f"{args.urls_file})", flush=True)
        exited: set[int] = set()
        while stopping["signal"] is None:
            for i, s in enumerate(servers):
                if i not in exited and s.proc is not None and s.proc.poll() is not None:
                    exited.add(i)
                    print(f"vllm serve on GPU(s) {','.join(s.gpus)} ({s.url}) exited with status "
                          f"{s.proc.returncode}; the clients move its requests to the others. "
                          f"Last lines of {s.log}:\n{serve.log_tail(s.log)}", file=sys.stderr, flush=True)
            if len(exited) == len(servers):
                print("dfer serve-captions: every server exited", file=sys.stderr)
                return 1
            time.sleep(1.0)
        return 0
    except RuntimeError as exc:
        print(f"dfer serve-captions: {exc}", file=sys.stderr)
        return 1
    finally:
        serve.stop(servers)
