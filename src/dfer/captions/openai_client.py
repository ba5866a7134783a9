"""The ``openai`` backend: a client of one or several OpenAI-compatible chat-completions servers.

Meant for ``vllm serve <model>`` running elsewhere (a GPU node, shared servers): the captions
stage then needs no GPU and no vLLM install, only ``httpx``. Frames go as JPEG data URLs,
either one ``image_url`` item per frame (``input: images``, any multi-image chat model) or one
``video_url`` item whose data URL holds the JPEG frames comma-separated (``input: video``,
vLLM's ``data:video/jpeg;base64,...`` form, which Qwen-VL models read as a video).

Robustness is the point of this module:

* **Many servers** (``base_url`` a list). Clip ``p`` of a shard (its position, counted over
  the describer's life) goes to server ``p mod n``: per-request round robin, so one shard job
  alone keeps every server busy and many jobs spread evenly, and which server answers a clip
  is known in advance. A server that stops answering (``dead_after`` connection failures or
  timeouts in a row, with no answer in between) is marked dead for the rest of the run; its
  queued and later requests, and the retries of those that failed on it, go to the next live
  server. The last live server is never marked dead (there is nowhere to move): with one
  server the client behaves as it always did.
* **Retries**: connection errors, timeouts, HTTP 408/429/5xx are retried with exponential
  backoff, each retry on the next eligible server (live, and fewer than ``max_retries + 1``
  attempts of this clip there); a clip fails only when every live server has had its
  attempts. Anything else (a 4xx, a malformed reply, an empty or oversized answer) is final.
* **Limits**: ``timeout_s`` is a deadline on the whole request, connect to last byte (httpx's
  own timeouts bound only the gap between bytes, so a server trickling one byte a second held
  a request indefinitely); the reply is read in chunks and dropped once over the size cap
  (``max_answer_chars``), so a runaway answer neither fills memory nor reaches the captions
  table, and is counted (:meth:`OpenAIDescriber.summary`).
* **No credentials in failure rows**: error bodies are quoted with the API key and anything
  shaped like an ``Authorization`` value masked (:func:`dfer.captions.base.redact`).

Every outcome becomes a :class:`Description`, so a server that is down yields one failure row
per clip, never an exception that loses the shard.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from dfer.captions.base import ClipInput, Description, redact, sample_frames
from dfer.captions.config import CHARS_PER_TOKEN_CAP, server_urls

log = logging.getLogger(__name__)

#: HTTP statuses worth retrying: the server is overloaded or failed transiently.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: Bytes of an error body read (and at most 300 characters of it quoted in the message).
ERROR_BODY_BYTES = 4096

#: JSON may spend up to 12 bytes on one character (a ``\\ud83d\\ude00`` escape pair), plus the
#: envelope (ids, usage): the reply byte cap that matches ``max_answer_chars``.
BYTES_PER_CHAR = 12
REPLY_OVERHEAD_BYTES = 64 * 1024


class _Retryable(Exception):
    """A transient failure; ``error_type`` names it in the failures table if retries run out.

    ``transport``: the server did not answer at all (connection refused or reset, deadline
    passed); these count towards marking the server dead, an HTTP status does not.
    """

    def __init__(self, error_type: str, message: str, transport: bool = False) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.transport = transport


class _Final(Exception):
    """A failure that retrying cannot fix (bad request, empty, malformed or oversized answer)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def jpeg_data(frame: np.ndarray, quality: int = 90) -> str:
    """Base64 of one RGB uint8 frame ``[H, W, 3]`` encoded as JPEG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), "RGB").save(
        buf, format="JPEG", quality=int(quality))
    return base64.b64encode(buf.getvalue()).decode("ascii")


def build_messages(prompt: str, frames: np.ndarray, input_mode: str,
                   quality: int = 90) -> list[dict[str, Any]]:
    """The chat ``messages`` of one clip: its frames first, then the question."""
    encoded = [jpeg_data(f, quality) for f in frames]
    if input_mode == "video":
        media: list[dict[str, Any]] = [{
            "type": "video_url",
            "video_url": {"url": "data:video/jpeg;base64," + ",".join(encoded)},
        }]
    elif input_mode == "images":
        media = [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{e}"}}
                 for e in encoded]
    else:
        raise ValueError(f"input must be 'video' or 'images', got {input_mode!r}")
    return [{"role": "user", "content": [*media, {"type": "text", "text": prompt}]}]


def parse_completion(body: Any) -> tuple[str, int]:
    """(answer text, completion tokens) of a chat-completions reply; raises ``_Final``."""
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise _Final("BadResponse", f"reply has no choices[0].message.content: {exc!r}") from None
    text = (text or "").strip()
    if not text:
        reason = choice.get("finish_reason") if isinstance(choice, Mapping) else None
        raise _Final("EmptyAnswer", f"the model returned an empty answer (finish_reason={reason})")
    usage = body.get("usage") or {}
    tokens = usage.get("completion_tokens")
    return text, int(tokens) if isinstance(tokens, int) else len(text.split())


@dataclass
class ServerPool:
    """The servers of one describer: which are live, and whom a clip's next attempt goes to.

    Plain state, no locks: every coroutine of a describer runs on one event loop thread.
    """

    urls: list[str]
    dead_after: int
    strikes: list[int] = field(default_factory=list)
    dead: dict[int, str] = field(default_factory=dict)  # server index -> why it was marked dead

    def __post_init__(self) -> None:
        self.strikes = [0] * len(self.urls)

    def live(self, i: int) -> bool:
        return i not in self.dead

    def pick(self, start: int, tries: Sequence[int], budget: int) -> int | None:
        """The first server from ``start`` on (wrapping) that is live and has had fewer than
        ``budget`` attempts of this clip; None when there is none."""
        n = len(self.urls)
        for k in range(n):
            i = (start + k) % n
            if self.live(i) and tries[i] < budget:
                return i
        return None

    def answered(self, i: int) -> None:
        """A reply (any HTTP status) came back: the server is alive, its strikes start over."""
        self.strikes[i] = 0

    def strike(self, i: int, reason: str) -> bool:
        """A transport failure on server ``i``; True when that made it dead (never the last
        live server: its clips have nowhere else to go, so they keep their retries there)."""
        if not self.live(i):
            return False
        self.strikes[i] += 1
        others = [j for j in range(len(self.urls)) if j != i and self.live(j)]
        if self.strikes[i] >= self.dead_after and others:
            self.dead[i] = reason
            return True
        return False


class OpenAIDescriber:
    """Describe clips through ``POST {base_url}/chat/completions`` on one or more servers.

    ``settings`` is the ``captions.openai`` config section; ``sampling`` carries
    ``temperature``, ``top_p``, ``max_tokens``, ``seed`` (sent with every request, so that a
    vLLM server answers deterministically) and ``num_frames``.
    """

    name = "openai"
    needs_frames = True
    needs_landmarks = False

    def __init__(self, settings: Mapping[str, Any], sampling: Mapping[str, Any],
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[object]] | None = None) -> None:
        self.model = str(settings["model"])
        self.urls = server_urls(settings["base_url"])
        self.input_mode = str(settings.get("input", "images"))
        self.max_concurrency = max(1, int(settings.get("max_concurrency", 8)))
        self.timeout_s = float(settings.get("timeout_s", 120.0))
        self.max_retries = max(0, int(settings.get("max_retries", 3)))
        self.backoff_s = float(settings.get("backoff_s", 1.0))
        self.jpeg_quality = int(settings.get("jpeg_quality", 90))
        self.num_frames = int(sampling["num_frames"])
        self.sampling = {k: sampling[k] for k in ("temperature", "top_p", "max_tokens", "seed")}
        cap = settings.get("max_answer_chars")
        self.max_answer_chars = int(cap) if cap else CHARS_PER_TOKEN_CAP * int(sampling["max_tokens"])
        self.max_reply_bytes = BYTES_PER_CHAR * self.max_answer_chars + REPLY_OVERHEAD_BYTES
        self.pool = ServerPool(self.urls, max(1, int(settings.get("dead_after", 3))))
        key = os.environ.get(str(settings.get("api_key_env") or ""), "")
        self._secrets = (key,) if key else ()
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._transport = transport
        #: awaited between retries with the backoff in seconds (tests pass a recorder)
        self._sleep = sleep if sleep is not None else asyncio.sleep
        #: clips described so far: the next clip's position (round robin over the servers)
        self._position = 0
        self.answers_over_cap = 0

    @property
    def base_url(self) -> str:
        """The first server (the only one in a single-server config)."""
        return self.urls[0]

    # -- one request -------------------------------------------------------------------
    def payload(self, clip: ClipInput, prompt: str) -> dict[str, Any]:
        """The JSON body for one clip (public so tests and benchmarks can inspect it)."""
        if clip.frames is None:
            raise _Final("MissingFrames", f"clip {clip.clip_id}: no decoded frames")
        frames = sample_frames(clip.frames, self.num_frames)
        return {
            "model": self.model,
            "messages": build_messages(prompt, frames, self.input_mode, self.jpeg_quality),
            **self.sampling,
        }

    def _quote(self, data: bytes, limit: int) -> str:
        """At most ``limit`` characters of a reply body, credentials masked before the cut
        (so that a cut cannot leave half a key the patterns no longer recognise)."""
        return redact(data.decode("utf-8", errors="replace"), self._secrets)[:limit]

    async def _read(self, resp: httpx.Response, cap: int, final_if_over: bool) -> bytes:
        """The body, read chunk by chunk up to ``cap`` bytes. Over the cap: ``_Final``
        (AnswerTooLarge) when ``final_if_over``, else the first ``cap`` bytes."""
        declared = resp.headers.get("content-length", "")
        if final_if_over and declared.isdigit() and int(declared) > cap:
            raise _Final("AnswerTooLarge", f"reply of {int(declared)} bytes is over the cap of "
                         f"{cap} bytes (captions.openai.max_answer_chars={self.max_answer_chars}): "
                         "not read")
        chunks, size = [], 0
        async for chunk in resp.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                if final_if_over:
                    raise _Final("AnswerTooLarge", f"reply over the cap of {cap} bytes (captions."
                                 f"openai.max_answer_chars={self.max_answer_chars}): stopped "
                                 "reading there")
                break
        return b"".join(chunks)[:cap]

    async def _exchange(self, client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[str, int]:
        """One request to one server, start to last byte."""
        async with client.stream("POST", f"{url}/chat/completions", json=body,
                                 headers=self.headers) as resp:
            if resp.status_code >= 400:
                text = self._quote(await self._read(resp, ERROR_BODY_BYTES, False), 300)
                if resp.status_code in RETRY_STATUSES:
                    raise _Retryable(f"HTTP{resp.status_code}", f"HTTP {resp.status_code}: {text[:200]}")
                raise _Final(f"HTTP{resp.status_code}", f"HTTP {resp.status_code}: {text}")
            data = await self._read(resp, self.max_reply_bytes, True)
        try:
            reply = json.loads(data)
        except ValueError:
            raise _Final("BadResponse", f"reply is not JSON: {self._quote(data, 200)!r}") from None
        text, tokens = parse_completion(reply)
        if len(text) > self.max_answer_chars:
            raise _Final("AnswerTooLarge", f"answer of {len(text)} characters is over captions."
                         f"openai.max_answer_chars={self.max_answer_chars}: not stored")
        return text, tokens

    async def _post_once(self, client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[str, int]:
        """One attempt under the total deadline; transport failures become ``_Retryable``."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._exchange(client, url, body)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _Retryable("Timeout", f"no complete reply within {self.timeout_s:g} s "
                             f"({type(exc).__name__})", transport=True) from None
        except httpx.TransportError as exc:
            raise _Retryable("ConnectionError", redact(f"{type(exc).__name__}: {exc}", self._secrets),
                             transport=True) from None

    def _mark_strike(self, i: int, exc: _Retryable) -> None:
        if self.pool.strike(i, exc.error_type):
            live = [u for j, u in enumerate(self.urls) if self.pool.live(j)]
            log.warning("captions: server %s stopped answering (%s %d times in a row): marked "
                        "dead for the rest of this run; its requests move to %s",
                        redact(self.urls[i]), exc.error_type, self.pool.strikes[i],
                        ", ".join(redact(u) for u in live))

    async def _attempts(self, client: httpx.AsyncClient, sems: Sequence[asyncio.Semaphore],
                        clip: ClipInput, body: dict[str, Any], first: int,
                        t0: float) -> Description:
        """Attempts of one clip over the servers until an answer or every live server has
        had ``max_retries + 1`` attempts (see the module docstring)."""
        budget = self.max_retries + 1
        tries = [0] * len(self.urls)
        start, last = first, None
        while (i := self.pool.pick(start, tries, budget)) is not None:
            if tries[i]:
                await self._sleep(self.backoff_s * (2 ** (tries[i] - 1)))
                if not self.pool.live(i):  # it died while this clip waited
                    continue
            async with sems[i]:
                if not self.pool.live(i):  # died while this clip queued for it: not an attempt
                    continue
                tries[i] += 1
                try:
                    text, tokens = await self._post_once(client, self.urls[i], body)
                    self.pool.answered(i)
                    return Description(clip.clip_id, text=text, num_tokens=tokens,
                                       seconds=time.perf_counter() - t0)
                except _Final as exc:
                    self.pool.answered(i)
                    if exc.error_type == "AnswerTooLarge":
                        self.answers_over_cap += 1
                    return Description(clip.clip_id, error_type=exc.error_type,
                                       message=f"clip {clip.clip_id}: {exc}")
                except _Retryable as exc:
                    last = exc
                    if exc.transport:
                        self._mark_strike(i, exc)
                    else:
                        self.pool.answered(i)
            start = i + 1  # the next attempt: the next eligible server (itself, when alone)
        attempts = sum(tries)
        servers = sum(1 for t in tries if t)
        where = f" on {servers} servers" if servers > 1 else ""
        if last is None:  # every server died before this clip got an attempt (cannot happen
            # while the last live server is never marked dead, kept as a guard)
            return Description(clip.clip_id, error_type="ConnectionError",
                               message=f"clip {clip.clip_id}: no live server left")
        return Description(clip.clip_id, error_type=last.error_type,
                           message=f"clip {clip.clip_id}: {last} (after {attempts} attempts{where})")

    async def _describe_one(self, client: httpx.AsyncClient, sems: Sequence[asyncio.Semaphore],
                            clip: ClipInput, prompt: str, position: int) -> Description:
        t0 = time.perf_counter()
        try:
            # JPEG encoding is CPU work (PIL releases the GIL): off the event loop, so that
            # it overlaps with the requests in flight instead of stalling them.
            body = await asyncio.to_thread(self.payload, clip, prompt)
        except _Final as exc:
            return Description(clip.clip_id, error_type=exc.error_type, message=str(exc))
        except ValueError as exc:
            return Description(clip.clip_id, error_type="BadFrames",
                               message=f"clip {clip.clip_id}: {exc}")
        return await self._attempts(client, sems, clip, body, position % len(self.urls), t0)

    async def _describe_all(self, clips: Sequence[ClipInput], prompt: str) -> list[Description]:
        sems = [asyncio.Semaphore(self.max_concurrency) for _ in self.urls]
        per_host = self.max_concurrency * len(self.urls)
        limits = httpx.Limits(max_connections=per_host, max_keepalive_connections=per_host)
        start = self._position
        self._position += len(clips)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits,
                                     transport=self._transport) as client:
            tasks = [self._describe_one(client, sems, clip, prompt, start + k)
                     for k, clip in enumerate(clips)]
            return list(await asyncio.gather(*tasks))

    def describe(self, clips: Sequence[ClipInput], prompt: str) -> list[Description]:
        """One Description per clip, in order; never raises for a clip's failure."""
        if not clips:
            return []
        return asyncio.run(self._describe_all(clips, prompt))

    def summary(self) -> dict[str, int]:
        """Counts for the shard's provenance: answers dropped for being over the size cap.
        (Which servers died is logged, not stored: it says where the job ran, not what it
        computed, and would make the artifact differ between identical runs.)"""
        return {"answers_over_cap": self.answers_over_cap}

    def close(self) -> None:
        """Clients are opened per :meth:`describe` call; nothing stays open."""
