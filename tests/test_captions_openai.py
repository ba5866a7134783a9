"""The OpenAI-compatible client against real HTTP servers on 127.0.0.1.

The server implements ``POST /v1/chat/completions`` with a behaviour chosen per test (answer,
sleep past the timeout, empty answer, 503 once per request, a fixed error status on every
request, 400, an answer trickled byte by byte, an oversized answer, an error that echoes the
request's credentials), records every request body and the peak number of requests in flight,
and can hold requests until several are in flight at once. Several servers at once test the
spread over a ``base_url`` list and fail-over, one of them a separate process that dies
mid-run. Failures must end up as per-clip failure rows with the shard written, never as an
exception. Nothing here bounds elapsed time: tests count requests and record the client's
backoff sleeps (injected, so no real backoff is spent).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import re
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
from support.ports import free_port

from dfer.captions.base import ClipInput
from dfer.captions.config import CaptionsConfig
from dfer.captions.openai_client import OpenAIDescriber, parse_completion
from dfer.captions.shard import run_shard
from dfer.core.artifacts import read_meta, read_parquet

ANSWER = ("The mouth opens slowly and the lip corners rise, suggesting happiness. "
          "The eyebrows stay level while the eyes narrow slightly.")


@dataclass
class Behaviour:
    mode: str = "ok"            # ok | sleep | empty | flaky | bad_request | status | trickle | echo
    sleep_s: float = 0.0        # latency of every answer (mode ok/flaky) or the stall (sleep)
    status: int = 503           # what mode "status" / "echo" answers to every request
    tag: str = ""               # appended to the answer ("Served by {tag}."): who answered
    answer: str | None = None   # the answer text (default ANSWER)
    length: bool = True         # send Content-Length (False: close the connection to end)
    trickle_s: float = 0.05     # mode trickle: the pause between single bytes of the reply
    sent: int = 0               # mode trickle: bytes written before the client went away
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
            if state.length:
                self.send_header("Content-Length", str(len(data)))
            else:
                self.close_connection = True
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if state.mode != "trickle":
                    self.wfile.write(data)
                    return
                self.wfile.flush()
                for k in range(len(data)):  # one byte at a time: never a long gap
                    self.wfile.write(data[k:k + 1])
                    self.wfile.flush()
                    state.sent = k + 1
                    time.sleep(state.trickle_s)

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
                if state.mode == "echo":  # what a careless server or proxy does with a bad key
                    auth = self.headers.get("Authorization", "")
                    key = auth.removeprefix("Bearer ")
                    return self._send(state.status, {"error": {
                        "message": f"invalid key {key}; you sent Authorization: {auth} "
                                   f"(api_key={key}, password: {key}) via http://user:{key}@proxy/v1",
                        "request_headers": {k.lower(): v for k, v in self.headers.items()}}})
                text = "" if state.mode == "empty" else (state.answer or ANSWER)
                if state.tag:
                    text = f"{text} Served by {state.tag}."
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


@contextlib.contextmanager
def _serving(state: Behaviour) -> Iterator[str]:
    """A stand-in server with ``state``'s behaviour on a free port, for the ``with`` block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    state = Behaviour()
    with _serving(state) as url:
        yield url, state


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
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
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


# ----------------------------------------------------------------------------- client limits


def _clip(cid: str = "a", value: int = 0) -> ClipInput:
    return ClipInput(cid, frames=np.full((4, 16, 16, 3), value, np.uint8))


def test_deadline_bounds_the_whole_request_not_the_gap_between_bytes(server):
    """A server that trickles its reply one byte every 50 ms never leaves a 0.5 s gap, so
    httpx's own timeouts never fire; the request must still end at the 0.5 s deadline,
    long before the ~300-byte reply (about 15 s) is complete."""
    url, state = server
    state.mode = "trickle"
    cfg = CaptionsConfig.from_params(_params(url, timeout_s=0.5, max_retries=0))
    (out,) = OpenAIDescriber(cfg.raw["openai"], cfg.sampling()).describe([_clip()], "q")
    assert out.error_type == "timeout"
    assert out.message == "clip a: no complete reply within 0.5 s (TimeoutError) (after 1 attempts)"
    assert len(state.bodies) == 1
    time.sleep(0.3)  # let the server notice the closed connection
    full = len(json.dumps({"choices": [{"message": {"content": ANSWER}}]}))
    assert 0 < state.sent < full / 2  # it was cut off early, not waited out


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "read-to-close"])
def test_oversized_reply_is_a_failure_and_counted_not_stored(server, tmp_path, length):
    """A 5 MB answer (the server ignores max_tokens) is dropped: a failure row naming the cap,
    no captions row, and ``answers_over_cap`` in the summary and the provenance. With a
    Content-Length it is refused unread; without one, reading stops at the byte cap."""
    url, state = server
    state.answer, state.length = "The mouth opens. " * 300_000, length  # 5.1 MB
    paths = _shard(tmp_path, n=2)
    summary = run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                        paths["failures"], _params(url, max_retries=0))
    cap = 32 * 64  # 32 characters per token x max_tokens 64: the default cap
    assert summary["clips"] == 0 and summary["answers_over_cap"] == 2
    assert read_meta(paths["out"])["answers_over_cap"] == 2
    fails = read_parquet(paths["failures"])
    assert list(fails["clip_id"]) == ["c0", "c1"] and set(fails["error_type"]) == {"backend_error"}
    reply_cap = 12 * cap + 65536
    for msg in fails["message"]:
        assert "(AnswerTooLarge)" in msg and f"max_answer_chars={cap}" in msg and len(msg) < 400
        assert (f"reply of {len(json.dumps(_reply(state)))} bytes is over the cap of {reply_cap} bytes"
                in msg) if length else (f"reply over the cap of {reply_cap} bytes" in msg)
    assert len(read_parquet(paths["out"])) == 0
    assert len(state.bodies) == 2  # final: not retried


def _reply(state: Behaviour) -> dict:
    """The JSON the stand-in sends in mode ok (to know its exact size)."""
    return {"id": "x", "object": "chat.completion", "model": "tiny-vl",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": state.answer or ANSWER}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 23, "total_tokens": 123}}


def test_answer_over_the_character_cap_fails_under_it_is_kept(server):
    url, state = server
    cfg = CaptionsConfig.from_params(_params(url, max_answer_chars=len(ANSWER)))
    client = OpenAIDescriber(cfg.raw["openai"], cfg.sampling())
    (ok,) = client.describe([_clip()], "q")
    assert ok.ok and ok.text == ANSWER  # exactly at the cap: kept whole
    state.answer = ANSWER + "x"
    (over,) = client.describe([_clip()], "q")
    assert over.error_type == "backend_error"
    assert over.message == (f"clip a: answer of {len(ANSWER) + 1} characters is over captions.openai."
                            f"max_answer_chars={len(ANSWER)}: not stored (AnswerTooLarge)")
    assert client.summary() == {"answers_over_cap": 1}


@pytest.mark.parametrize("status", [400, 503])
def test_error_bodies_are_stored_with_credentials_masked(server, tmp_path, monkeypatch, caplog, status):
    """A server that echoes the request's credentials in its error body (the key bare, as a
    Bearer value, as api_key=..., in a URL, in a header dump): the failures table and the log
    keep the error's text but never the key."""
    url, state = server
    key = "sk-live-0123456789abcdef"
    monkeypatch.setenv("DFER_TEST_KEY", key)
    state.mode, state.status = "echo", status
    paths = _shard(tmp_path, n=2)
    with caplog.at_level("DEBUG"):
        run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                  paths["failures"], _params(url, api_key_env="DFER_TEST_KEY", max_retries=1,
                                              backoff_s=0.0))
    assert len(state.bodies) == (2 if status == 400 else 4)  # 503 is retried once, 400 not
    fails = read_parquet(paths["failures"])
    assert list(fails["clip_id"]) == ["c0", "c1"] and set(fails["error_type"]) == {"backend_error"}
    stored = fails.to_csv() + json.dumps(read_meta(paths["failures"])) + caplog.text
    assert key not in stored and key[:12] not in stored
    msg = fails["message"].iloc[0]
    assert msg.startswith(f"clip c0: HTTP {status}: ")
    assert "invalid key ***" in msg and "Authorization: ***" in msg and "api_key=***" in msg
    assert "password: ***" in msg and "http://***@proxy" in msg


def test_masking_covers_header_dumps_and_keeps_plain_text():
    from dfer.captions.base import redact

    dump = json.dumps({"authorization": "Bearer abc.def-ghi", "x-api-key": "k3y-value",
                       "proxy-authorization": "Basic dXNlcjpwYXNz", "host": "127.0.0.1"})
    masked = redact(dump)
    assert json.loads(masked) == {"authorization": "***", "x-api-key": "***",
                                  "proxy-authorization": "***", "host": "127.0.0.1"}
    plain = "token limit exceeded: basic check failed for 9000 tokens"
    assert redact(plain) == plain
    assert redact("key=abcd1234; secret: s3cr3t", ["abcd1234"]) == "key=***; secret: ***"


def test_failure_table_in_docs_is_the_code_table():
    """docs/captions.md lists the failures exactly as ``dfer.captions.base.FAILURES`` maps
    them, every value is in the shared vocabulary that docs/architecture.md lists, and no
    error_type outside the table reaches the rows (the client's codes map through it)."""
    from dfer.captions.base import FAILURES, failure_table, vocabulary_error
    from dfer.core.shard_runner import ErrorType

    docs = Path(__file__).resolve().parents[1] / "docs"
    assert failure_table() in (docs / "captions.md").read_text()
    arch = (docs / "architecture.md").read_text()
    for f in FAILURES:
        assert f"| `{f.error_type.value}` |" in arch
    # every code the client raises, and every HTTP status, maps to the documented type
    expected = {"Timeout": "timeout", "ConnectionError": "connection_error", "HTTP503": "backend_error",
                "HTTP400": "backend_error", "BadResponse": "backend_error",
                "AnswerTooLarge": "backend_error", "EmptyAnswer": "empty_answer",
                "MissingFrames": "missing_frames", "BadFrames": "bad_input", "RuntimeError": "backend_error"}
    for code, error_type in expected.items():
        assert vocabulary_error(code, "m")[0] == error_type
        assert error_type in {e.value for e in ErrorType}


# ----------------------------------------------------------------------------- many servers


@pytest.mark.parametrize("value, message", [
    ([], "captions.openai.base_url is an empty list"),
    (["http://a:1/v1", "http://a:1/v1/"], "captions.openai.base_url[1] repeats 'http://a:1/v1'"),
    (["http://a:1/v1", "a:2"], "captions.openai.base_url[1] must be an http:// or https:// URL"),
    ("ftp://x", "captions.openai.base_url must be an http:// or https:// URL"),
])
def test_base_url_list_is_validated(value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CaptionsConfig.from_params(_params(value))


def test_a_list_of_urls_spreads_clips_round_robin(tmp_path):
    """Three live servers, 9 clips in batches of 4: clip p (its position in the shard, counted
    across batches) is answered by server p mod 3; the single URL form still works."""
    states = [Behaviour(tag=t) for t in "ABC"]
    with _serving(states[0]) as a, _serving(states[1]) as b, _serving(states[2]) as c:
        paths = _shard(tmp_path, n=9)
        params = {**_params([a, b, c]), "batch_size": 4}
        summary = run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                            paths["failures"], params)
        assert summary["clips"] == 9
        df = read_parquet(paths["out"])
        served = [raw.rsplit(" ", 1)[-1].rstrip(".") for raw in df["raw_text"]]
        assert served == ["A", "B", "C"] * 3
        assert [len(s.bodies) for s in states] == [3, 3, 3]
        assert all(cap.endswith("Served by " + t + ".") for cap, t in zip(df["caption"], served, strict=True))


def test_server_that_stops_answering_is_marked_dead_and_its_clips_move(tmp_path, caplog):
    """Server A accepts connections but never answers: its clips time out, after 2 timeouts
    in a row it is dead, and every clip is captioned by B; A sees no request after that."""
    hung, live = Behaviour(mode="sleep", sleep_s=5.0), Behaviour(tag="B")
    with _serving(hung) as a, _serving(live) as b:
        paths = _shard(tmp_path, n=6)
        with caplog.at_level("WARNING"):
            summary = run_shard(paths["frames"], paths["index"], paths["landmarks"], paths["out"],
                                paths["failures"], _params([a, b], timeout_s=0.3, dead_after=2,
                                                           max_retries=1))
    assert summary["clips"] == 6 and summary["failed_clips"] == 0
    assert all(raw.endswith("Served by B.") for raw in read_parquet(paths["out"])["raw_text"])
    assert len(hung.bodies) == 3  # the three clips sent to it at once; none after it died
    assert len(live.bodies) == 6
    assert f"server {a} stopped answering (Timeout 2 times in a row): marked dead" in caplog.text


KILLABLE = r'''
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS = int(sys.argv[1])
state = {"received": 0, "done": 0}
cond = threading.Condition()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        with cond:
            state["received"] += 1
            n = state["received"]
        if n > ANSWERS:  # the server dies here, once every answer it gave is on the wire
            with cond:
                cond.wait_for(lambda: state["done"] >= ANSWERS, 10)
            os._exit(0)
        data = json.dumps({"choices": [{"finish_reason": "stop", "message": {
            "content": "The mouth opens slowly. Served by A."}}],
            "usage": {"completion_tokens": 5}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        with cond:
            state["done"] += 1
            cond.notify_all()


httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
'''


def test_server_killed_mid_run_loses_nothing(tmp_path, caplog):
    """Two servers; A is a separate process that answers 3 requests and then dies (exits
    while the next requests are in flight: their connections drop; later ones are refused).
    Every clip is captioned: A's 3 answers are kept, every other clip, including the ones in
    flight on A when it died, is answered by B, and A is marked dead."""
    import subprocess
    import sys

    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    proc = subprocess.Popen([sys.executable, str(script), "3"], stdout=subprocess.PIPE, text=True)
    try:
        a = f"http://127.0.0.1:{int(proc.stdout.readline())}/v1"
        live = Behaviour(tag="B")
        with _serving(live) as b:
            paths = _shard(tmp_path, n=12)
            with caplog.at_level("WARNING"):
                summary = run_shard(paths["frames"], paths["index"], paths["landmarks"],
                                    paths["out"], paths["failures"],
                                    _params([a, b], max_concurrency=2, max_retries=1))
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0  # it died by its own os._exit, mid-run
    assert summary["clips"] == 12 and summary["failed_clips"] == 0
    df = read_parquet(paths["out"])
    assert list(df["clip_id"]) == [f"c{i}" for i in range(12)]
    by = df["raw_text"].str.extract(r"Served by (\w)\.$")[0]
    assert (by == "A").sum() == 3 and (by == "B").sum() == 9
    # A got the even positions: its 3 answers are 3 of them, every other even clip moved to B
    assert set(df["clip_id"][by == "A"]) < {f"c{i}" for i in range(0, 12, 2)}
    assert len(live.bodies) == 9
    assert f"server {a} stopped answering (ConnectionError 3 times in a row): marked dead" in caplog.text
    assert len(read_parquet(paths["failures"])) == 0
