"""Which model answers, and what happens when Gemini fails.

- No API key: offline mode from the start; every round goes to the local model.
- Gemini fails before its first text or call (HTTP error, refused connection, first-chunk
  timeout): the same round is re-run on the local model. The caller hears at most the filler
  the engine plays while waiting (engine.py), never an error.
- Gemini breaks after text was produced (dropped connection, stall, total limit): the local
  model continues the reply from the text already streamed (`ChatRequest.prefix`), so nothing
  is repeated; the round's model is then both ("gemini:...+local:...").
- After an outage Gemini is skipped and probed in the background every
  `retry_after_failure_s`; the first probe that answers puts it back in charge. A refusal
  (empty or blocked answer) is answered locally without skipping Gemini.
- `mode`: "cloud" (Gemini in charge), "local" (Gemini configured but skipped), "offline"
  (no API key). Shown by /healthz through Engine.status(), and logged on every change.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Literal, Union

from ..config import GeminiSettings, Settings
from .base import (ChatModel, ChatRequest, ModelError, StreamDone, StreamEvent, TextChunk,
                   ToolCallChunk)

log = logging.getLogger(__name__)

Prefer = Literal["auto", "gemini", "local"]


@dataclass
class ChatModels:
    """The models of this process, built once at start-up (see `from_settings`)."""

    gemini: Any = None   # GeminiModel (or a stand-in with .name, .stream(), .probe())
    local: Any = None    # LocalModel, None when not downloaded or failed to load

    @classmethod
    def from_settings(cls, settings: Settings, local: Any = None) -> "ChatModels":
        """Gemini when an API key is set; `local` is the already loaded LocalModel (or None)."""
        gemini = None
        if settings.gemini.api_key:
            from .gemini import GeminiModel

            gemini = GeminiModel(settings.gemini)
        return cls(gemini=gemini, local=local)

    async def aclose(self) -> None:
        if self.gemini is not None and hasattr(self.gemini, "aclose"):
            await self.gemini.aclose()
        if self.local is not None and hasattr(self.local, "close"):
            await asyncio.to_thread(self.local.close)


@dataclass(frozen=True)
class Answering:
    """From now on this model produces the round's output.

    `reason` is empty for the first choice, else the failure code that made it take over;
    `continuing` is True when it finishes a reply another model started.
    """

    model: str
    reason: str = ""
    continuing: bool = False


RouterEvent = Union[Answering, StreamEvent]


class ModelRouter:
    """The failover policy around the two models. One per process (inside the Engine)."""

    def __init__(self, models: ChatModels, settings: GeminiSettings,
                 clock: Any = time.monotonic) -> None:
        self.models = models
        self.settings = settings
        self._clock = clock
        self._healthy = models.gemini is not None
        self._last_error = ""
        self._down_since: float | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._probes = 0

    # -- state ----------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        if self.models.gemini is None:
            return "offline"
        return "cloud" if self._healthy else "local"

    def status(self) -> dict[str, Any]:
        gemini: dict[str, Any] = {"configured": self.models.gemini is not None}
        if self.models.gemini is not None:
            gemini.update(model=self.settings.model, healthy=self._healthy,
                          last_error=self._last_error or None, probes=self._probes)
            if self._down_since is not None:
                gemini["down_for_s"] = round(self._clock() - self._down_since, 1)
        local = self.models.local
        local_status: dict[str, Any] = {"loaded": local is not None,
                                        "model": local.name if local is not None else None}
        if local is not None and callable(getattr(local, "status", None)):
            local_status["kv"] = local.status()   # [i17] reused vs evaluated prompt tokens
        return {"mode": self.mode, "gemini": gemini, "local": local_status}

    def _set_down(self, error: ModelError) -> None:
        self._last_error = error.code
        if not error.outage:
            log.warning("Gemini refused a turn (%s); answered locally", error)
            return
        if self._healthy:
            self._healthy = False
            self._down_since = self._clock()
            log.warning("LLM mode cloud -> local: Gemini failed (%s); skipping it, probing "
                        "every %d s", error, self.settings.retry_after_failure_s)
        if self._probe_task is None or self._probe_task.done():
            # A fresh context: the probe outlives the call that saw the failure.
            self._probe_task = asyncio.get_running_loop().create_task(
                self._probe_loop(), name="gemini-probe", context=contextvars.Context())

    def _set_up(self, why: str) -> None:
        if not self._healthy:
            log.warning("LLM mode local -> cloud: %s", why)
        self._healthy = True
        self._down_since = None
        self._last_error = ""

    async def _probe_loop(self) -> None:
        while not self._healthy:
            await asyncio.sleep(self.settings.retry_after_failure_s)
            self._probes += 1
            try:
                elapsed = await self.models.gemini.probe()
            except ModelError as exc:
                self._last_error = exc.code
                log.info("Gemini probe failed: %s", exc)
                continue
            self._set_up(f"Gemini answered a probe in {elapsed:.0f} ms")

    async def aclose(self) -> None:
        task, self._probe_task = self._probe_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    # -- one round ------------------------------------------------------------------------

    def _use_gemini(self, prefer: Prefer) -> bool:
        if self.models.gemini is None or prefer == "local":
            return False
        if prefer == "gemini" or self._healthy:
            return True
        return self.models.local is None  # skipped, but nothing else can answer

    async def stream(self, request: ChatRequest, prefer: Prefer = "auto"
                     ) -> AsyncIterator[RouterEvent]:
        """One model round with failover. Raises ModelError only when no model can answer."""
        local: ChatModel | None = self.models.local if prefer != "gemini" else None
        if not self._use_gemini(prefer):
            if local is None:
                raise ModelError("not_loaded", "no language model is available "
                                 "(no Gemini API key and no local model)", outage=False)
            yield Answering(local.name)
            async for event in local.stream(request):
                yield event
            return

        gemini = self.models.gemini
        text, calls = "", 0
        yield Answering(gemini.name)
        try:
            async for event in gemini.stream(request):
                if isinstance(event, TextChunk):
                    text += event.text
                elif isinstance(event, ToolCallChunk):
                    calls += 1
                yield event
            if not self._healthy:
                self._set_up("Gemini answered a turn")
            return
        except ModelError as exc:
            failure = exc
        self._set_down(failure)
        if calls:
            # The calls arrived whole; the round is usable. The next round goes local.
            log.info("Gemini stream failed after %d tool call(s) (%s); keeping them",
                     calls, failure.code)
            yield StreamDone(finish_reason="tool_calls")
            return
        if local is None:
            raise failure
        if text:
            log.info("Gemini broke after %d chars (%s); the local model continues the reply",
                     len(text), failure.code)
        else:
            log.info("Gemini failed before its first token (%s); the local model answers",
                     failure.code)
        yield Answering(local.name, reason=failure.code, continuing=bool(text))
        async for event in local.stream(replace(request, prefix=request.prefix + text)):
            yield event
