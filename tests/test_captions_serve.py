"""``dfer serve-captions`` with a stand-in for ``vllm serve``: GPU groups, the command each
server gets, the URL overlay, captions through the started servers, and a clean stop.

The stand-in is an "interpreter" script that runs a small HTTP server instead of vLLM: it
records its command line and ``CUDA_VISIBLE_DEVICES``, answers ``/health`` and chat
completions (naming its port), and is stopped by the command's SIGTERM like a real server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from captions_data import animate, write_shard

from dfer.captions import serve
from dfer.captions.config import CaptionsConfig
from dfer.captions.shard import run_shard
from dfer.core.artifacts import read_parquet

REPO = Path(__file__).resolve().parents[1]

FAKE_VLLM = r'''
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

argv = sys.argv[1:]
port = int(argv[argv.index("--port") + 1])
record = os.path.join(os.environ["FAKE_VLLM_RECORD"], f"{port}.json")
with open(record, "w") as fh:
    json.dump({"argv": argv, "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
               "api_key": os.environ.get("VLLM_API_KEY"), "pid": os.getpid()}, fh)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send({})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send({"choices": [{"finish_reason": "stop", "message": {
            "content": f"The mouth opens. Served by {port}."}}], "usage": {"completion_tokens": 6}})


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


def _free_ports(n: int) -> int:
    """A base port with ``n`` free ports from it on."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for k in range(n):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
    raise RuntimeError("no free consecutive ports")


@pytest.fixture
def fake_vllm(tmp_path: Path) -> tuple[Path, Path]:
    """(interpreter script, record folder) of the stand-in."""
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE_VLLM)
    python = tmp_path / "fake-python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record"
    record.mkdir()
    return python, record


def _kill_recorded(record: Path) -> None:
    for path in record.glob("*.json"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(json.loads(path.read_text())["pid"], signal.SIGKILL)


def test_gpu_groups_and_visible_gpus():
    assert serve.gpu_groups(["0", "1", "2", "3"], 2) == [("0", "1"), ("2", "3")]
    assert serve.gpu_groups(["3", "5", "6"], 1) == [("3",), ("5",), ("6",)]
    with pytest.raises(ValueError, match=r"3 GPU\(s\) \(0,1,2\) cannot be split into groups of tensor_parallel_size=2"):
        serve.gpu_groups(["0", "1", "2"], 2)
    assert serve.visible_gpus(None, {"CUDA_VISIBLE_DEVICES": "3,5,6,7"}) == ["3", "5", "6", "7"]
    assert serve.visible_gpus("1, 2", {"CUDA_VISIBLE_DEVICES": "0"}) == ["1", "2"]


def test_serve_command_follows_the_captions_config():
    cfg = CaptionsConfig.from_params({
        "num_frames": 7, "seed": 5,
        "vllm": {"model": "/models/qwen", "dtype": "bfloat16", "enforce_eager": True,
                 "engine_args": {"max_num_seqs": 16, "enable_prefix_caching": False,
                                 "mm_processor_kwargs": {"fps": 2}}},
        "openai": {"model": "qwen-vl", "input": "video"}})
    cmd = serve.serve_command("/env/bin/python", cfg, "0.0.0.0", 8003, 2, ["--x", "1"])
    assert cmd == ["/env/bin/python", "-m", "vllm.entrypoints.cli.main", "serve", "/models/qwen",
                   "--host", "0.0.0.0", "--port", "8003", "--served-model-name", "qwen-vl",
                   "--dtype", "bfloat16", "--max-model-len", "8192", "--gpu-memory-utilization", "0.85",
                   "--tensor-parallel-size", "2", "--seed", "5", "--limit-mm-per-prompt", '{"video": 1}',
                   "--enforce-eager", "--max-num-seqs", "16", "--mm-processor-kwargs", '{"fps": 2}',
                   "--x", "1"]
    images = CaptionsConfig.from_params({"num_frames": 7})
    assert serve.serve_command("p", images, "h", 1, 1)[-2:] == ["--limit-mm-per-prompt", '{"image": 8}']


def test_serve_captions_starts_one_server_per_gpu_group(fake_vllm, tmp_path, monkeypatch):
    python, record = fake_vllm
    port = _free_ports(2)
    urls_file = tmp_path / "servers.yaml"
    cfg_file = tmp_path / "captions.yaml"
    cfg_file.write_text(yaml.safe_dump({"captions": {
        "num_frames": 4, "vllm": {"model": "/models/tiny", "tensor_parallel_size": 2},
        "openai": {"model": "tiny-vl", "api_key_env": "DFER_TEST_SERVE_KEY"}}}))
    env = {**os.environ, "DFER_VLLM_PYTHON": str(python), "FAKE_VLLM_RECORD": str(record),
           "DFER_TEST_SERVE_KEY": "sk-serve-1234", "PYTHONPATH": str(REPO / "src")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dfer", "serve-captions", "--config", str(cfg_file), "--gpus", "0,1,2,3",
         "--host", "127.0.0.1", "--port", str(port), "--urls-file", str(urls_file),
         "--log-dir", str(tmp_path / "logs"), "--start-timeout", "60", "--", "--max-num-seqs", "4"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert lines[0] == "captions servers ready (captions.openai.base_url):", proc.stderr.read() if proc.poll() is not None else lines
        urls = [f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port + 1}/v1"]
        assert lines[1:] == urls
        assert yaml.safe_load(urls_file.read_text()) == {
            "captions": {"backend": "openai", "openai": {"base_url": urls}}}
        rec = [json.loads((record / f"{port + k}.json").read_text()) for k in range(2)]
        assert [r["gpus"] for r in rec] == ["0,1", "2,3"]
        assert all(r["api_key"] == "sk-serve-1234" for r in rec)  # clients send it, servers demand it
        argv = rec[1]["argv"]
        assert argv[:4] == ["-m", "vllm.entrypoints.cli.main", "serve", "/models/tiny"]
        flags = dict(zip(argv[4::2], argv[5::2], strict=False))
        assert (flags["--port"], flags["--tensor-parallel-size"], flags["--served-model-name"],
                flags["--limit-mm-per-prompt"], flags["--max-num-seqs"]) == (
                    str(port + 1), "2", "tiny-vl", '{"image": 4}', "4")
        assert "sk-serve-1234" not in " ".join(argv)  # the key never goes on a command line
        # a caption shard through the servers named by the overlay: every clip, both servers
        shard = write_shard(tmp_path / "shard", {f"c{i}": animate("mouth_open") for i in range(4)})
        params = {**yaml.safe_load(cfg_file.read_text())["captions"], "backend": "openai"}
        params["openai"] = {**params["openai"], "base_url": urls}
        monkeypatch.setenv("DFER_TEST_SERVE_KEY", "sk-serve-1234")
        summary = run_shard(shard["frames"], shard["index"], shard["landmarks"], shard["out"],
                            shard["failures"], params)
        assert summary["clips"] == 4
        served = read_parquet(shard["out"])["raw_text"].str.extract(r"Served by (\d+)\.$")[0]
        assert served.tolist() == [str(port), str(port + 1)] * 2
        # SIGTERM (what SLURM sends at the end of the job) stops the servers and their command
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill_recorded(record)  # stand-ins a failed run left behind (no-op after a clean stop)
    for r in rec:
        with pytest.raises(ProcessLookupError):
            os.kill(r["pid"], 0)
    for k in range(2):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port + k}/health", timeout=2.0)


def test_a_server_that_fails_to_start_stops_the_others(fake_vllm, tmp_path):
    """The second server's port is taken: it dies at start, the command names it and its log
    and stops the first one; no overlay is written."""
    python, record = fake_vllm
    port = _free_ports(2)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port + 1))
    blocker.listen()
    env = {**os.environ, "DFER_VLLM_PYTHON": str(python), "FAKE_VLLM_RECORD": str(record),
           "PYTHONPATH": str(REPO / "src")}
    try:
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "dfer", "serve-captions", "--gpus", "0,1", "--host", "127.0.0.1",
             "--port", str(port), "--urls-file", str(tmp_path / "u.yaml"),
             "--log-dir", str(tmp_path / "logs"), "--start-timeout", "60"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    finally:
        blocker.close()
    first = json.loads((record / f"{port}.json").read_text())
    try:
        os.kill(first["pid"], 0)
    except ProcessLookupError:
        outlived = False
    else:
        outlived = True
        _kill_recorded(record)
    assert not outlived, "the first server outlived the failed start"
    assert done.returncode == 1 and time.monotonic() - t0 < 60
    assert f"vllm serve on GPU(s) 1 (port {port + 1}) exited with status 1 before it was healthy" in done.stderr
    assert "Address already in use" in done.stderr  # the log's last lines
    assert not (tmp_path / "u.yaml").exists()
