"""Live calls on the dashboard: who is on the line now, pushed to browsers by Server-Sent Events.

`LiveCalls.on_event(event)` is the one entry point that changes the picture (CallStarted,
CallTurn, CallEnded). Today the events come from `poll_once()`, which compares the in-progress
rows of `calls` / `call_turns` with the last picture, once a second while a browser watches.
When the runtime's per-call event stream exists, subscribe `on_event` to it instead of
starting the poll (see `admin.setup`), mapping its events onto the three below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from ..logs import mask_phone
from ..store.db import Database
from .html import parse_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallStarted:
    call_sid: str
    caller: str            # E.164 (masked before it reaches a browser)
    name: str | None
    started_at: str        # ISO-8601 UTC


@dataclass(frozen=True)
class CallTurn:
    call_sid: str
    turns: int             # caller turns so far
    last_said: str         # what the caller said last


@dataclass(frozen=True)
class CallEnded:
    call_sid: str


CallEvent = CallStarted | CallTurn | CallEnded


@dataclass(frozen=True)
class LiveCall:
    call_sid: str
    caller: str
    name: str | None
    started_at: str
    turns: int = 0
    last_said: str = ""

    def as_json(self, now: float) -> dict[str, object]:
        started = parse_utc(self.started_at)
        seconds = int(now - started.timestamp()) if started else 0
        who = mask_phone(self.caller) if self.caller else "unknown number"
        return {"call_sid": self.call_sid, "caller": f"{self.name} ({who})" if self.name
                else who, "seconds": max(0, seconds), "turns": self.turns,
                "started": started.timestamp() if started else now,
                "last_said": self.last_said}


class LiveCalls:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time,
                 poll_s: float = 1.0, stale_after_s: float = 3600) -> None:
        self.db, self.clock, self.poll_s, self.stale_after_s = db, clock, poll_s, stale_after_s
        self.calls: dict[str, LiveCall] = {}
        self._subscribers: set[asyncio.Queue[bool]] = set()
        self._poller: asyncio.Task | None = None
        self._closed = False

    # -- the picture -------------------------------------------------------------------------

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, CallStarted):
            self.calls[event.call_sid] = LiveCall(event.call_sid, event.caller, event.name,
                                                  event.started_at)
        elif isinstance(event, CallTurn):
            known = self.calls.get(event.call_sid)
            if known is None:
                return
            self.calls[event.call_sid] = replace(known, turns=event.turns,
                                                 last_said=event.last_said)
        elif isinstance(event, CallEnded) and self.calls.pop(event.call_sid, None) is None:
            return
        self._notify()

    def snapshot(self) -> list[dict[str, object]]:
        now = self.clock()
        return [c.as_json(now) for c in sorted(self.calls.values(), key=lambda c: c.started_at)]

    # -- subscribers (one per open SSE connection) -------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[bool]]:
        """A queue that gets True on every change and False when the dashboard shuts down."""
        queue: asyncio.Queue[bool] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        if self._closed:
            queue.put_nowait(False)
        elif self._poller is None or self._poller.done():
            await self.poll_once()
            self._poller = asyncio.get_running_loop().create_task(self._poll_loop(),
                                                                  name="admin-live-poll")
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def _notify(self, value: bool = True) -> None:
        for queue in self._subscribers:
            if queue.full():
                continue     # a change is already waiting to be sent
            queue.put_nowait(value)

    async def close(self) -> None:
        self._closed = True
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            queue.put_nowait(False)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    # -- the poll fallback -------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while self._subscribers and not self._closed:
            await asyncio.sleep(self.poll_s)
            try:
                await self.poll_once()
            except sqlite3.Error as exc:
                log.warning("admin: live calls poll failed: %s", exc)

    async def poll_once(self) -> None:
        """Read the calls in progress and turn the differences into events."""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                              time.gmtime(self.clock() - self.stale_after_s))
        rows = await self.db.fetchall(
            "SELECT c.call_sid, c.caller, c.started_at, cu.name, "
            " (SELECT count(*) FROM call_turns t WHERE t.call_id = c.id) AS turns, "
            " (SELECT transcript FROM call_turns t WHERE t.call_id = c.id "
            "  ORDER BY t.turn_index DESC LIMIT 1) AS last_said "
            "FROM calls c LEFT JOIN customers cu ON cu.id = c.customer_id "
            "WHERE c.ended_at IS NULL AND c.outcome = 'in_progress' AND c.started_at > ?",
            (since,))
        seen = set()
        for row in rows:
            sid = row["call_sid"]
            seen.add(sid)
            known = self.calls.get(sid)
            if known is None or known.name != row["name"]:
                self.on_event(CallStarted(sid, row["caller"], row["name"], row["started_at"]))
                known = self.calls[sid]
            if row["turns"] != known.turns:
                self.on_event(CallTurn(sid, row["turns"], row["last_said"] or ""))
        for sid in set(self.calls) - seen:
            self.on_event(CallEnded(sid))
