"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1.

The server implements ``POST /v1/chat/completions`` with a behaviour chosen per test (answer,
sleep past the timeout, empty answer, 503 once per request, a fixed error status on every
request, 400), records every request body and the peak number of requests in flight, and can
hold requests until several are in flight at once. Failures must end up as per-clip failure
rows with the shard written, never as an exception. Nothing here bounds elapsed time: tests
count requests and record the client's backoff sleeps (injected, so no real backoff is spent).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from captions_data import animate, write_shard
from PIL import Image

from dfer.captions.base import ClipInput
from dfer.captions.config import CaptionsConfig
from dfer.captions.openai_client import OpenAIDescriber, parse_completion
from dfer.captions.shard import run_shard
from dfer.core.artifacts import read_meta, read_parquet

ANSWER = ("The mouth opens slowly and the lip corners rise, suggesting happiness. "
          "The eyebrows stay level while the eyes narrow slightly.")


@dataclass
class Behaviour:
    mode: str = "ok"            # ok | sleep | empty | flaky | bad_request | status
    sleep_s: float = 0.0        # latency of every answer (mode ok/flaky) or the stall (sleep)
    status: int = 503           # what mode "status" answers to every request
    gate: int = 0               # hold requests until this many have been in flight at once
    gate_timeout_s: float = 10.0  # ... or until this long has passed (a client that never gets there)
    bodies: list[dict] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    in_flight: int = 0
    peak: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)


def _handler(state: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            body = json.loads(raw)
            key = hashlib.sha256(raw).hexdigest()
            with state.lock:
                state.bodies.append(body)
                first = key not in state.seen
                state.seen.add(key)
                state.in_flight += 1
                state.peak = max(state.peak, state.in_flight)
                state.lock.notify_all()
                if state.gate:
                    state.lock.wait_for(lambda: state.peak >= state.gate, state.gate_timeout_s)
            try:
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": "not found"})
                    return
                time.sleep(state.sleep_s)
                if state.mode == "sleep":
                    return self._send(200, {"choices": []})  # too late: client gave up
                if state.mode == "status":
                    return self._send(state.status, {"error": {"message": f"status {state.status}"}})
                if state.mode == "bad_request":
                    return self._send(400, {"error": {"message": "too many images"}})
                if state.mode == "flaky" and first:
                    return self._send(503, {"error": "overloaded"})
                text = "" if state.mode == "empty" else ANSWER
                self._send(200, {
                    "id": "x", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 23, "total_tokens": 123},
                })
            finally:
                with state.lock:
                    state.in_flight -= 1
                    state.lock.notify_all()

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    state = Behaviour()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    httpd.shutdown()
    httpd.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _params(base_url: str, **openai: object) -> dict:
    settings = {"base_url": base_url, "model": "tiny-vl", "timeout_s": 5.0, "max_retries": 2,
                "backoff_s": 0.01, "max_concurrency": 4, **openai}
    return {"backend": "openai", "num_frames": 4, "max_tokens": 64, "seed": 7,
            "openai": settings}


def _shard(tmp_path: Path, n: int = 3) -> dict[str, Path]:
    return write_shard(tmp_path, {f"c{i}": animate("mouth_open") for i in range(n)})


def test_answers_become_refined_rows_with_raw_text(server, tmp_path):
    url, state = server
    paths = _shard(tmp_path)
    summary = run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                        paths["failures"], _params(url))
    df = read_parquet(paths["out"])
    assert summary["clips"] == 3 and summary["failed_clips"] == 0
    assert list(df["clip_id"]) == ["c0", "c1", "c2"]
    assert set(df["raw_text"]) == {ANSWER}
    caption = df["caption"].iloc[0]
    assert "happiness" not in caption and "suggesting" not in caption
    assert "lip corners rise" in caption and "eyes narrow slightly" in caption
    assert set(df["num_tokens"]) == {23}  # from the server's usage block
    assert set(df["backend"]) == {"openai"} and set(df["model"]) == {"tiny-vl"}
    cfg = CaptionsConfig.from_params(_params(url))
    assert set(df["prompt_hash"]) == {cfg.prompt_hash()}
    assert read_meta(paths["out"])["prompt_hash"] == cfg.prompt_hash()
    assert len(read_parquet(paths["failures"])) == 0
    # Deterministic sampling and the frames as JPEG data URLs, then the question.
    body = state.bodies[0]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.0, 1.0, 64, 7)
    content = body["messages"][0]["content"]
    assert [c["type"] for c in content] == ["image_url"] * 4 + ["text"]
    assert "facial expression analyst" in content[-1]["text"]
    url0 = content[0]["image_url"]["url"]
    assert url0.startswith("data:image/jpeg;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(url0.split(",", 1)[1])))
    assert img.format == "JPEG" and img.size == (64, 64)


def test_video_input_sends_one_jpeg_sequence(server):
    url, state = server
    cfg = CaptionsConfig.from_params(_params(url, input="video"))
    client = OpenAIDescriber(cfg.raw["openai"], cfg.sampling())
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    out = client.describe([ClipInput("a", frames=frames)], "describe")
    assert out[0].ok
    item = state.bodies[0]["messages"][0]["content"][0]
    assert item["type"] == "video_url"
    prefix, data = item["video_url"]["url"].split(",", 1)
    assert prefix == "data:video/jpeg;base64"
    # 4 frames requested (even), each a base64 JPEG, comma-separated
    parts = item["video_url"]["url"][len("data:video/jpeg;base64,"):].split(",")
    assert len(parts) == 4
    assert all(base64.b64decode(p)[:2] == b"\xff\xd8" for p in parts)


def test_server_down_gives_failure_rows_and_a_written_shard(tmp_path):
    paths = _shard(tmp_path)
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    summary = run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                        paths["failures"], _params(url))
    assert summary["clips"] == 0 and summary["failed_clips"] == 3
    assert len(read_parquet(paths["out"])) == 0
    fails = read_parquet(paths["failures"])
    assert list(fails["clip_id"]) == ["c0", "c1", "c2"]
    assert set(fails["error_type"]) == {"connection_error"}
    assert fails["message"].str.contains("after 3 attempts").all()
    assert set(fails["stage"]) == {"captions"}


def test_timeout_gives_failure_rows_after_retries(server, tmp_path):
    url, state = server
    state.mode, state.sleep_s = "sleep", 1.0
    paths = _shard(tmp_path, n=2)
    summary = run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                        paths["failures"], _params(url, timeout_s=0.2, max_retries=1))
    assert summary["failed_clips"] == 2
    fails = read_parquet(paths["failures"])
    assert set(fails["error_type"]) == {"timeout"}
    assert fails["message"].str.contains("after 2 attempts").all()
    assert len(state.bodies) == 4  # 2 clips x (1 try + 1 retry)


def test_empty_answer_is_a_failure_row_and_not_retried(server, tmp_path):
    url, state = server
    state.mode = "empty"
    paths = _shard(tmp_path, n=2)
    run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
              paths["failures"], _params(url))
    fails = read_parquet(paths["failures"])
    assert set(fails["error_type"]) == {"empty_answer"}
    assert fails["message"].str.contains("finish_reason=stop").all()
    assert len(state.bodies) == 2


def test_5xx_then_success_is_retried(server, tmp_path):
    url, state = server
    state.mode = "flaky"
    paths = _shard(tmp_path, n=3)
    summary = run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                        paths["failures"], _params(url))
    assert summary["clips"] == 3 and summary["failed_clips"] == 0
    assert len(state.bodies) == 6  # each request: 503 once, then the answer
    assert len(read_parquet(paths["out"])) == 3


def test_4xx_is_final(server):
    url, state = server
    state.mode = "bad_request"
    cfg = CaptionsConfig.from_params(_params(url))
    out = OpenAIDescriber(cfg.raw["openai"], cfg.sampling()).describe(
        [ClipInput("a", frames=np.zeros((4, 16, 16, 3), np.uint8))], "q")
    assert out[0].error_type == "backend_error" and "HTTP 400" in out[0].message and "too many images" in out[0].message
    assert len(state.bodies) == 1


def test_concurrency_is_bounded(server):
    url, state = server
    # Requests are held until 2 have been in flight at once, so a client that sends 2 at a
    # time reaches a peak of exactly 2 however slow the machine; the short latency of every
    # answer gives a client without the bound the chance to send more.
    state.gate, state.sleep_s = 2, 0.05
    cfg = CaptionsConfig.from_params(_params(url, max_concurrency=2))
    clips = [ClipInput(f"c{i}", frames=np.full((4, 16, 16, 3), i, np.uint8)) for i in range(6)]
    out = OpenAIDescriber(cfg.raw["openai"], cfg.sampling()).describe(clips, "q")
    assert [d.clip_id for d in out] == [c.clip_id for c in clips] and all(d.ok for d in out)
    assert len(state.bodies) == 6
    assert state.peak == 2


def _sleep_recorder() -> tuple[list[float], object]:
    """An injectable ``sleep`` that records the backoff delays instead of waiting."""
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    return delays, sleep


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retries_run_out_on_5xx_and_429(server, status):
    url, state = server
    state.mode, state.status = "status", status
    cfg = CaptionsConfig.from_params(_params(url, max_retries=3, backoff_s=0.5))
    delays, sleep = _sleep_recorder()
    client = OpenAIDescriber(cfg.raw["openai"], cfg.sampling(), sleep=sleep)
    (out,) = client.describe([ClipInput("clip7", frames=np.zeros((4, 16, 16, 3), np.uint8))], "q")
    assert not out.ok and out.text == ""
    assert len(state.bodies) == 3 + 1  # max_retries + 1 attempts, then it gives up
    assert delays == [0.5, 1.0, 2.0]  # exponential backoff between the attempts, none after
    assert out.error_type == "backend_error"
    assert out.message == f"clip clip7: HTTP {status}: " + json.dumps(
        {"error": {"message": f"status {status}"}}) + " (after 4 attempts)"


def test_no_retries_means_one_attempt(server):
    url, state = server
    state.mode, state.status = "status", 503
    cfg = CaptionsConfig.from_params(_params(url, max_retries=0))
    delays, sleep = _sleep_recorder()
    (out,) = OpenAIDescriber(cfg.raw["openai"], cfg.sampling(), sleep=sleep).describe(
        [ClipInput("a", frames=np.zeros((4, 16, 16, 3), np.uint8))], "q")
    assert out.error_type == "backend_error" and "HTTP 503" in out.message and out.message.endswith("(after 1 attempts)")
    assert len(state.bodies) == 1 and delays == []


def test_exhausted_retries_become_failure_rows(server, tmp_path):
    url, state = server
    state.mode, state.status = "status", 429
    paths = _shard(tmp_path, n=2)
    summary = run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                        paths["failures"], _params(url, max_retries=2, backoff_s=0.0))
    assert summary["clips"] == 0 and summary["failed_clips"] == 2
    assert len(read_parquet(paths["out"])) == 0
    fails = read_parquet(paths["failures"])
    assert list(fails["clip_id"]) == ["c0", "c1"] and set(fails["error_type"]) == {"backend_error"}
    assert all(m.startswith(f"clip {c}: HTTP 429") and m.endswith("(after 3 attempts)")
               for c, m in zip(fails["clip_id"], fails["message"], strict=True))
    assert len(state.bodies) == 2 * 3


def test_clip_without_frames_fails_alone(server):
    url, _ = server
    cfg = CaptionsConfig.from_params(_params(url))
    out = OpenAIDescriber(cfg.raw["openai"], cfg.sampling()).describe(
        [ClipInput("no-frames"), ClipInput("ok", frames=np.zeros((4, 16, 16, 3), np.uint8))], "q")
    assert out[0].error_type == "missing_frames" and out[1].ok


@pytest.mark.parametrize("body, error", [
    ({"choices": []}, "BadResponse"),
    ({"choices": [{"message": {"content": None}, "finish_reason": "length"}]}, "EmptyAnswer"),
    ({"choices": [{"message": {"content": "  \n "}}]}, "EmptyAnswer"),
])
def test_parse_completion_rejects_bad_replies(body, error):
    with pytest.raises(Exception) as info:
        parse_completion(body)
    assert info.value.error_type == error


def test_parse_completion_falls_back_to_word_count():
    assert parse_completion({"choices": [{"message": {"content": " a b c "}}]}) == ("a b c", 3)
