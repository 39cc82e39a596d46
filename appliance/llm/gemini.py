"""Gemini through google-genai's async streaming API, with explicit limits.

google-genai has no timeout and, on a refused connection, silently sleeps 1-10 s and retries;
neither is acceptable on a phone call. So the client is built with retries off
(`HttpRetryOptions(attempts=1)`, which also disables the implicit aiohttp retry), automatic
stream continuation and automatic function calling off, and three limits enforced here with
asyncio around a reader task:

- first_token_timeout_ms: from the request to the first text or function call;
- stall_timeout_ms: between two chunks once the answer started (measured where the network is
  read, so a slow consumer never counts as a stall);
- total_timeout_ms: the whole round.

Text parts flagged as thoughts are never returned (they must not be spoken).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator

from ..config import GeminiSettings
from .base import (ChatMessage, ChatRequest, ModelError, StreamDone, StreamEvent, TextChunk,
                   ToolCall, ToolCallChunk)

log = logging.getLogger(__name__)
MAX_OUTPUT_TOKENS = 1024   # a reply is a few sentences; never more than this

# Function calls that did not come from Gemini (the local model made them) carry no thought
# signature; Gemini 3 rejects an unsigned call in the current turn unless it carries this
# documented placeholder.
_FOREIGN_SIGNATURE = b"skip_thought_signature_validator"
_PROBE_TEXT = "Reply with the single word OK."


class GeminiModel:
    """One google-genai client for the process. `stream()` may run concurrently."""

    def __init__(self, settings: GeminiSettings) -> None:
        from google import genai
        from google.genai import types

        self._types = types
        self.settings = settings
        http_options = types.HttpOptions(
            base_url=settings.base_url or None,
            # A safety net only; the limits below are the real ones.
            timeout=settings.total_timeout_ms + 2000,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(api_key=settings.api_key, http_options=http_options)

    @property
    def name(self) -> str:
        return f"gemini:{self.settings.model}"

    async def aclose(self) -> None:
        await self._client.aio.aclose()

    # -- requests -------------------------------------------------------------------------

    def build_config(self, request: ChatRequest) -> Any:
        t = self._types
        config: dict[str, Any] = {
            "system_instruction": request.system or None,
            "thinking_config": t.ThinkingConfig(thinking_budget=self.settings.thinking_budget),
            "automatic_function_calling": t.AutomaticFunctionCallingConfig(disable=True),
            "automatic_continuation": False,
        }
        # Always bounded: an unbounded answer is cost and, on WhatsApp, a flood of parts.
        # (thinking tokens count against it, so the thinking budget is added on top)
        config["max_output_tokens"] = min(request.max_tokens or MAX_OUTPUT_TOKENS,
                                          MAX_OUTPUT_TOKENS) + max(0, self.settings.thinking_budget)
        if request.tools:
            config["tools"] = [t.Tool(function_declarations=[
                t.FunctionDeclaration(name=s.name, description=s.description,
                                      parameters_json_schema=dict(s.parameters))
                for s in request.tools])]
            mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}[request.tool_choice]
            config["tool_config"] = t.ToolConfig(
                function_calling_config=t.FunctionCallingConfig(mode=mode))
        return t.GenerateContentConfig(**config)

    def build_contents(self, messages: tuple[ChatMessage, ...]) -> list[Any]:
        t = self._types
        contents: list[Any] = []
        for m in messages:
            if m.role == "user":
                parts = [t.Part(text=m.context)] if m.context else []
                parts.append(t.Part(text=m.text))
                role = "user"
            elif m.role == "assistant":
                parts = [t.Part(text=m.text)] if m.text else []
                parts.extend(_call_part(t, c) for c in m.tool_calls)
                role = "model"
                if not parts:
                    continue
            else:
                call = m.call or ToolCall(name="unknown", args={})
                parts = [t.Part(function_response=t.FunctionResponse(
                    name=call.name, id=call.id or None, response={"result": m.text}))]
                role = "user"
            if contents and contents[-1].role == role and role == "user" and m.role == "user":
                contents[-1].parts.extend(parts)  # two user turns in a row: one content
            else:
                contents.append(t.Content(role=role, parts=parts))
        if contents and contents[0].role == "model":
            # The greeting came first; the API wants a conversation to start with the user.
            contents.insert(0, t.Content(role="user",
                                         parts=[t.Part(text="(the conversation starts)")]))
        return contents

    # -- streaming ------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        if request.prefix:
            raise ModelError("bad_request", "Gemini cannot continue a partial reply",
                             outage=False)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        clock = {"last": loop.time()}
        reader = asyncio.create_task(
            self._read(self.build_contents(request.messages), self.build_config(request),
                       queue, clock), name="gemini-reader")
        started_at = loop.time()
        started = False
        finish = ""
        usage: Any = None
        try:
            while True:
                kind, item = await self._next(queue, started, started_at, clock["last"])
                if kind == "error":
                    raise _classify(item, started)
                if kind == "end":
                    break
                chunk = item
                usage = getattr(chunk, "usage_metadata", None) or usage
                for event, reason in _events(chunk):
                    if reason:
                        finish = reason
                    if event is not None:
                        started = True
                        yield event
            yield _done(finish, started, usage)
        finally:
            reader.cancel()
            # wait() never raises the reader's outcome; it raises only if we are cancelled.
            await asyncio.wait({reader})

    async def _next(self, queue: asyncio.Queue[tuple[str, Any]], started: bool,
                    started_at: float, last_chunk_at: float) -> tuple[str, Any]:
        """The reader's next item, within the first-token, stall and total time limits."""
        if not queue.empty():
            return queue.get_nowait()
        s = self.settings
        if started:
            deadline, code = last_chunk_at + s.stall_timeout_ms / 1000, "stall_timeout"
        else:
            deadline, code = started_at + s.first_token_timeout_ms / 1000, "first_token_timeout"
        total_deadline = started_at + s.total_timeout_ms / 1000
        if total_deadline <= deadline:
            deadline, code = total_deadline, "total_timeout"
        try:
            async with asyncio.timeout_at(deadline):
                return await queue.get()
        except TimeoutError:
            elapsed = asyncio.get_running_loop().time() - started_at
            raise ModelError(code, f"{elapsed:.2f} s after the request",
                             started=started) from None

    async def _read(self, contents: list[Any], config: Any,
                    queue: asyncio.Queue[tuple[str, Any]], clock: dict[str, float]) -> None:
        """Read the HTTP stream into the queue; the consumer applies the time limits."""
        loop = asyncio.get_running_loop()
        stream = None
        try:
            stream = await self._client.aio.models.generate_content_stream(
                model=self.settings.model, contents=contents, config=config)
            async for chunk in stream:
                clock["last"] = loop.time()
                queue.put_nowait(("chunk", chunk))
            queue.put_nowait(("end", None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is classified by the consumer
            queue.put_nowait(("error", exc))
        finally:
            if stream is not None:
                await _aclose_quietly(stream)

    async def probe(self) -> float:
        """A tiny request with the same limits; returns its latency in ms or raises ModelError."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        request = ChatRequest(system_static="", system_dynamic="",
                              messages=(ChatMessage("user", _PROBE_TEXT),), max_tokens=8)
        async for event in self.stream(request):
            if isinstance(event, (TextChunk, StreamDone)):
                break
        return (loop.time() - started) * 1000


def _call_part(t: Any, call: ToolCall) -> Any:
    if call.raw is not None:
        return call.raw
    return t.Part(function_call=t.FunctionCall(name=call.name, args=dict(call.args),
                                               id=call.id or None),
                  thought_signature=_FOREIGN_SIGNATURE)


def _events(chunk: Any) -> list[tuple[StreamEvent | None, str]]:
    """The stream events in one response chunk, with the finish reason if it carries one."""
    out: list[tuple[StreamEvent | None, str]] = []
    feedback = getattr(chunk, "prompt_feedback", None)
    if feedback is not None and getattr(feedback, "block_reason", None):
        out.append((None, "SAFETY"))
    for candidate in (chunk.candidates or [])[:1]:
        content = candidate.content
        for part in (content.parts if content and content.parts else []):
            if part.function_call is not None:
                fc = part.function_call
                out.append((ToolCallChunk(ToolCall(name=fc.name or "", args=dict(fc.args or {}),
                                                   id=fc.id or "", raw=part)), ""))
            elif part.text and not part.thought:
                out.append((TextChunk(part.text), ""))
        if candidate.finish_reason:
            reason = getattr(candidate.finish_reason, "value", str(candidate.finish_reason))
            out.append((None, str(reason)))
    return out


def _classify(exc: BaseException, started: bool) -> ModelError:
    from google.genai import errors

    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, errors.APIError):
        return ModelError(f"http_{exc.code}", str(exc.message or exc.status or exc)[:200],
                          started=started)
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp is a dependency of the project
        aiohttp = None  # type: ignore[assignment]
    if aiohttp is not None:
        if isinstance(exc, aiohttp.ClientConnectorError):
            return ModelError("connect", str(exc)[:200], started=started)
        if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
            return ModelError("broken", str(exc)[:200] or type(exc).__name__, started=started)
        if isinstance(exc, aiohttp.ClientError):
            return ModelError("connect" if not started else "broken",
                              f"{type(exc).__name__}: {exc}"[:200], started=started)
    if isinstance(exc, (OSError, TimeoutError)):
        return ModelError("connect" if not started else "broken", str(exc)[:200],
                          started=started)
    if isinstance(exc, (ValueError, json.JSONDecodeError)):
        return ModelError("bad_response", f"{type(exc).__name__}: {exc}"[:200], started=started)
    log.warning("unexpected Gemini client error: %r", exc)
    return ModelError("bad_response", f"{type(exc).__name__}: {exc}"[:200], started=started)


async def _aclose_quietly(stream: Any) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - closing a broken stream may fail again; nothing to do
        log.debug("closing the Gemini stream failed", exc_info=True)


def _done(finish: str, started: bool, usage: Any) -> StreamDone:
    """The end of a stream that said something, or the ModelError for one that did not."""
    if not finish:
        raise ModelError("broken", "the stream ended without a finish reason", started=started)
    if finish in ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION") \
            and not started:
        raise ModelError("blocked", f"finish reason {finish}", outage=False)
    if not started:
        raise ModelError("empty", f"no text and no call (finish reason {finish})",
                         outage=False)
    return StreamDone(
        finish_reason=finish.lower(),
        prompt_tokens=getattr(usage, "prompt_token_count", 0) or 0,
        cached_tokens=getattr(usage, "cached_content_token_count", 0) or 0,
        output_tokens=getattr(usage, "candidates_token_count", 0) or 0)
