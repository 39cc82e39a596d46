"""Everything the process loads once at start-up, and the truth about it for /healthz.

`Runtime.start(settings)` opens the database and loads every model off the event loop, recording
per component whether it loaded, how long it took, and why not. The server listens only after
this, so /healthz never says "ready" for models still loading; a missing model shows up here and
in `appliance doctor`, not in the middle of a call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from .call.registry import CallRegistry
from .config import ModelRef, Settings
from .store.db import Database, StoreError

log = logging.getLogger(__name__)


@dataclass
class Component:
    name: str
    ok: bool = False
    detail: str = ""
    load_ms: float = 0.0
    needed_for_calls: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "load_ms": round(self.load_ms, 1)}


@dataclass
class Runtime:
    settings: Settings
    db: Database | None = None
    vad: Any = None          # appliance.audio.vad.SileroVad
    stt: Any = None          # appliance.stt.whisper.SpeechRecognizer
    tts: Any = None          # appliance.tts.piper.Speaker
    local_llm: Any = None    # appliance.llm.local.LocalModel
    embedder: Any = None     # appliance.kb.embed.Embedder
    kb: Any = None           # appliance.kb.search.KnowledgeBase
    engine: Any = None       # appliance.conversation.engine.Engine
    components: dict[str, Component] = field(default_factory=dict)
    calls: CallRegistry = field(default_factory=CallRegistry)
    extras: dict[str, Any] = field(default_factory=dict)  # channel services (outbox, ...)
    # The caller-audio front end (decode, resample, VAD: ~0.1 ms a frame) gets its own thread
    # so it never queues behind a transcription in the default executor.
    audio_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="audio-in"))
    _closers: list[Callable[[], Any]] = field(default_factory=list)
    _background: set[asyncio.Task] = field(default_factory=set)

    @classmethod
    async def start(cls, settings: Settings) -> "Runtime":
        rt = cls(settings=settings)
        try:
            rt.db = await Database.open(settings.storage.database)
            rt.components["database"] = Component("database", True,
                                                   str(settings.storage.database), 0, True)
            rt._closers.append(rt.db.close)
        except (StoreError, OSError) as exc:
            rt.components["database"] = Component("database", False, str(exc), 0, True)
        from . import loaders

        await loaders.load_all(rt)
        return rt

    async def load(self, name: str, fn: Callable[[], Any], *, needed_for_calls: bool,
                   ref: ModelRef | None = None) -> Any:
        """Run a blocking loader in a thread and record the outcome under `name`."""
        if ref is not None and not ref.present:
            how = (f"run `appliance models download {ref.manifest_name}`" if ref.manifest_name
                   else f"fix {ref.setting}")
            self.components[name] = Component(name, False, f"{ref.path} is missing; {how}", 0,
                                              needed_for_calls)
            log.warning("%s not loaded: %s is missing", name, ref.path)
            return None
        started = time.perf_counter()
        try:
            value = await asyncio.to_thread(fn)
        except Exception as exc:  # noqa: BLE001 - any loader failure is reported, not fatal
            elapsed = (time.perf_counter() - started) * 1000
            self.components[name] = Component(name, False, f"failed to load: {exc}", elapsed,
                                              needed_for_calls)
            log.error("%s failed to load: %s", name, exc)
            return None
        elapsed = (time.perf_counter() - started) * 1000
        self.components[name] = Component(name, True, str(ref.path) if ref else "", elapsed,
                                          needed_for_calls)
        log.info("%s loaded in %.0f ms", name, elapsed)
        closer = getattr(value, "close", None)
        if callable(closer):
            self._closers.append(closer)
        return value

    def can_take_calls(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        out = [f"{c.name}: {c.detail}" for c in self.components.values()
               if c.needed_for_calls and not c.ok]
        if self.engine is None:
            out.append("conversation engine: no language model available (set GEMINI_API_KEY "
                       "or download the local model)")
        return out

    def health(self) -> dict[str, Any]:
        problems = self.problems()
        llm = self.engine.status() if self.engine is not None else {"mode": "none"}
        return {
            "ready": not problems,
            "problems": problems,
            "components": {name: c.as_json() for name, c in self.components.items()},
            "llm": llm,
            "gemini": {"configured": bool(self.settings.gemini.api_key)},
            "active_calls": self.calls.active_count(),
        }

    def spawn(self, coro: Any, name: str) -> asyncio.Task:
        """Work that outlives a request or a call (summaries); awaited or cancelled at close."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return task

    async def close(self) -> None:
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
        self.audio_executor.shutdown(wait=False, cancel_futures=True)
        for closer in reversed(self._closers):
            result = closer()
            if asyncio.iscoroutine(result):
                await result
        self._closers.clear()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed: %r", task.get_name(), task.exception())
