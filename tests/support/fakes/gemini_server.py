"""A Gemini API stand-in on loopback, speaking the REST/SSE protocol google-genai uses.

`POST /{version}/models/{model}:streamGenerateContent?alt=sse` answers `text/event-stream`
with one `data: <GenerateContentResponse JSON>` event per chunk, the last one carrying
`finishReason`, exactly as the Gemini API does; errors are HTTP statuses with the API's JSON
error body. Every request is recorded (parsed body, headers, path) for the test to inspect.

What each request gets is scripted: `server.script(Reply(...), Reply(...))` queues replies,
consumed in order; when the queue is empty `server.default` answers (a plain text reply unless
changed). A reply may also be a function `(Recorded) -> Reply` to answer from the request
(for instance to put a tool's result into the text).

Failure modes: `status` (429/500/503 ...), `stall_after` (stop sending after N chunks while
keeping the connection open), `break_after` (drop the connection after N chunks), and
`stop()` (the port then refuses connections; `start()` again reuses the same port).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from aiohttp import web

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


@dataclass(frozen=True)
class Call:
    """A function call the fake model makes."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    signature: bytes = b"fake-thought-signature"


@dataclass(frozen=True)
class Reply:
    """What one request gets.

    text: the answer, sent in chunks of `words_per_chunk` words;
    calls: function calls sent (in one chunk) after the text;
    ttft_s: delay before the first chunk (time to first token);
    tokens_per_s: pace of the following chunks (a word counted as 1.3 tokens); 0 = at once;
    status: an HTTP error status instead of a stream;
    stall_after: after this many chunks, send nothing more for `stall_s` (then end);
    break_after: after this many chunks, drop the connection (no finish reason);
    thoughts: a thought part sent first (must never be spoken).
    """

    text: str = ""
    calls: tuple[Call, ...] = ()
    ttft_s: float = 0.0
    tokens_per_s: float = 0.0
    words_per_chunk: int = 3
    status: int = 200
    stall_after: int | None = None
    stall_s: float = 30.0
    break_after: int | None = None
    finish_reason: str = "STOP"
    thoughts: str = ""


@dataclass
class Recorded:
    """One request as received."""

    model: str
    method: str          # "streamGenerateContent" or "generateContent"
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float   # time.monotonic()

    def user_texts(self) -> list[str]:
        return [p["text"] for c in self.body.get("contents", []) if c.get("role") == "user"
                for p in c.get("parts", []) if "text" in p]

    def all_texts(self) -> list[tuple[str, str]]:
        """(role, text) of every text part, in order."""
        return [(c.get("role", ""), p["text"]) for c in self.body.get("contents", [])
                for p in c.get("parts", []) if "text" in p]

    def function_responses(self) -> list[dict[str, Any]]:
        return [p["functionResponse"] for c in self.body.get("contents", [])
                for p in c.get("parts", []) if "functionResponse" in p]

    def function_calls(self) -> list[dict[str, Any]]:
        return [p for c in self.body.get("contents", []) for p in c.get("parts", [])
                if "functionCall" in p]

    @property
    def system(self) -> str:
        parts = (self.body.get("systemInstruction") or {}).get("parts", [])
        return "".join(p.get("text", "") for p in parts)

    @property
    def tool_names(self) -> list[str]:
        return [d["name"] for t in self.body.get("tools", [])
                for d in t.get("functionDeclarations", [])]

    @property
    def is_probe(self) -> bool:
        return not self.body.get("tools") and "OK" in " ".join(self.user_texts())


Script = Union[Reply, Callable[[Recorded], Reply]]


class FakeGemini:
    """`async with FakeGemini() as gemini:` ... `gemini.base_url` goes into [gemini] base_url."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: list[Recorded] = []
        self.default: Script = Reply(text="Hello from the fake Gemini.")
        self._queue: list[Script] = []
        self._runner: web.AppRunner | None = None
        self._streams: set[web.StreamResponse] = set()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> "FakeGemini":
        app = web.Application()
        app.router.add_post("/{version}/models/{target}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Close the port: new requests get 'connection refused'; open streams are dropped."""
        if self._runner is not None:
            for response in list(self._streams):
                request = response._req  # type: ignore[attr-defined]
                transport = request.transport if request is not None else None
                if transport is not None:
                    transport.abort()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeGemini":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting ------------------------------------------------------------------------

    def script(self, *replies: Script) -> None:
        self._queue.extend(replies)

    @property
    def turn_requests(self) -> list[Recorded]:
        """The requests that were not background probes."""
        return [r for r in self.requests if not r.is_probe]

    # -- the protocol ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        target = request.match_info["target"]
        model, _, method = target.partition(":")
        body = await request.json()
        recorded = Recorded(model=model, method=method, path=request.path,
                            query=dict(request.query), headers=dict(request.headers),
                            body=body, received_at=time.monotonic())
        self.requests.append(recorded)
        if request.headers.get("x-goog-api-key", "") == "":
            return _error(401, "API key not valid. Please pass a valid API key.")
        script = self._queue.pop(0) if self._queue else self.default
        reply = script(recorded) if callable(script) else script
        if reply.status != 200:
            if reply.ttft_s:
                await asyncio.sleep(reply.ttft_s)
            return _error(reply.status, f"fake error {reply.status}")
        chunks = _chunks(reply, model)
        if method == "generateContent":
            await asyncio.sleep(reply.ttft_s)
            return web.json_response(_merge(chunks))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        self._streams.add(response)
        try:
            await asyncio.sleep(reply.ttft_s)
            for index, (chunk, words) in enumerate(chunks):
                if reply.break_after is not None and index >= reply.break_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if reply.stall_after is not None and index >= reply.stall_after:
                    await asyncio.sleep(reply.stall_s)
                    return response
                if index and reply.tokens_per_s:
                    await asyncio.sleep(words * 1.3 / reply.tokens_per_s)
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away (cancelled, or gave up on a slow stream)
        finally:
            self._streams.discard(response)
        return response


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message,
                                        "status": _STATUS_NAMES.get(status, "UNKNOWN")}},
                             status=status)


def _chunks(reply: Reply, model: str) -> list[tuple[dict[str, Any], int]]:
    """(GenerateContentResponse JSON, words in it) for each SSE event of the reply."""
    words = reply.text.split(" ") if reply.text else []
    size = max(1, reply.words_per_chunk)
    pieces = [" ".join(words[i:i + size]) + (" " if i + size < len(words) else "")
              for i in range(0, len(words), size)]
    parts: list[tuple[list[dict[str, Any]], int]] = []
    if reply.thoughts:
        parts.append(([{"text": reply.thoughts, "thought": True}], 0))
    parts.extend(([{"text": p}], len(p.split())) for p in pieces)
    if reply.calls:
        parts.append(([{"functionCall": {"name": c.name, "args": c.args},
                        "thoughtSignature": base64.b64encode(c.signature).decode()}
                       for c in reply.calls], 1))
    if not parts:
        parts.append(([], 0))
    out = []
    for index, (p, count) in enumerate(parts):
        candidate: dict[str, Any] = {"content": {"parts": p, "role": "model"}, "index": 0}
        if index == len(parts) - 1:
            candidate["finishReason"] = reply.finish_reason
        out.append(({"candidates": [candidate],
                     "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": count,
                                       "totalTokenCount": 10 + count},
                     "modelVersion": model, "responseId": "fake"}, count))
    return out


def _merge(chunks: list[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    parts = [p for c, _ in chunks for p in c["candidates"][0]["content"]["parts"]]
    last = chunks[-1][0]
    return {"candidates": [{"content": {"parts": parts, "role": "model"}, "index": 0,
                            "finishReason": last["candidates"][0].get("finishReason", "STOP")}],
            "usageMetadata": last["usageMetadata"], "modelVersion": last["modelVersion"]}
