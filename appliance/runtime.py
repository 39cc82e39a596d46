"""Health and lifecycle of the running process: which component loaded (how long it took, or why
not), what to close at the end, and the background work that outlives a request.

`Runtime` holds no service: appliance.compose builds those and returns them in one typed
`Services`. Each builder records its component here (`load` for blocking model loaders, run in a
thread; `report` for the rest) and hands over what must be closed (`add_closer`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from .config import ModelRef

log = logging.getLogger(__name__)
T = TypeVar("T")
Closer = Callable[[], "Awaitable[None] | None"]
JsonValue = str | bool | float | int | None


@dataclass
class Component:
    name: str
    ok: bool = False
    detail: str = ""
    load_ms: float = 0.0
    needed_for_calls: bool = False

    def as_json(self) -> dict[str, JsonValue]:
        return {"ok": self.ok, "detail": self.detail, "load_ms": round(self.load_ms, 1)}


@dataclass
class Runtime:
    components: dict[str, Component] = field(default_factory=dict)
    # The caller-audio front end (decode, resample, VAD: ~0.1 ms a frame) gets its own thread
    # so it never queues behind a transcription in the default executor.
    audio_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="audio-in"))
    # Calls' transcriptions, one at a time (Whisper uses every core it is given): a job whose
    # caller went on before it started is cancelled in the queue and never runs.
    stt_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="stt-call"))
    _closers: list[Closer] = field(default_factory=list)
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def report(self, name: str, ok: bool, detail: str = "", *, needed_for_calls: bool = False,
               load_ms: float = 0.0) -> None:
        self.components[name] = Component(name, ok, detail, load_ms, needed_for_calls)

    def add_closer(self, closer: Closer) -> None:
        self._closers.append(closer)

    async def load(self, name: str, fn: Callable[[], T], *, needed_for_calls: bool,
                   ref: ModelRef | None = None) -> T | None:
        """Run a blocking loader in a thread and record the outcome under `name`."""
        if ref is not None and not ref.present:
            how = (f"run `appliance models download {ref.manifest_name}`" if ref.manifest_name
                   else f"fix {ref.setting}")
            self.report(name, False, f"{ref.path} is missing; {how}",
                        needed_for_calls=needed_for_calls)
            log.warning("%s not loaded: %s is missing", name, ref.path)
            return None
        started = time.perf_counter()
        try:
            value = await asyncio.to_thread(fn)
        except Exception as exc:  # noqa: BLE001 - any loader failure is reported, not fatal
            elapsed = (time.perf_counter() - started) * 1000
            self.report(name, False, f"failed to load: {exc}", needed_for_calls=needed_for_calls,
                        load_ms=elapsed)
            log.error("%s failed to load: %s", name, exc)
            return None
        elapsed = (time.perf_counter() - started) * 1000
        self.report(name, True, str(ref.path) if ref else "", needed_for_calls=needed_for_calls,
                    load_ms=elapsed)
        log.info("%s loaded in %.0f ms", name, elapsed)
        closer = getattr(value, "close", None)
        if callable(closer):
            self._closers.append(closer)
        return value

    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.components.values()
                if c.needed_for_calls and not c.ok]

    def spawn(self, coro: Coroutine[object, object, None], name: str) -> asyncio.Task[None]:
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
        self.stt_executor.shutdown(wait=False, cancel_futures=True)
        for closer in reversed(self._closers):
            result = closer()
            if asyncio.iscoroutine(result):
                await result
        self._closers.clear()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed: %r", task.get_name(), task.exception())
