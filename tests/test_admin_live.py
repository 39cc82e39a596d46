"""LiveCalls: the picture the dashboard's live view shows, from events (`on_event`, what the
runtime's call event stream will feed) or from the database poll that stands in for it now."""

from __future__ import annotations

import asyncio
from pathlib import Path

from appliance.admin.live import CallEnded, CallStarted, CallTurn, LiveCalls
from appliance.store.db import Database

NOW = 1_780_000_000.0          # unix seconds


def iso(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


async def test_events_change_the_picture_and_wake_subscribers(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    live = LiveCalls(db, clock=lambda: NOW, poll_s=3600)
    try:
        async with live.subscribe() as changes:
            live.on_event(CallStarted("CA1", "+972501234567", None, iso(NOW - 42)))
            assert await asyncio.wait_for(changes.get(), 1) is True
            live.on_event(CallTurn("CA1", 1, "I need a plumber"))
            live.on_event(CallTurn("CA2", 1, "unknown call: ignored"))
            assert live.snapshot() == [{"call_sid": "CA1", "caller": "+97250*****67",
                                        "seconds": 42, "turns": 1,
                                        "last_said": "I need a plumber",
                                        "started": NOW - 42}]
            live.on_event(CallEnded("CA1"))
            assert live.snapshot() == []
            await live.close()
            while (value := await asyncio.wait_for(changes.get(), 1)) is True:
                pass
            assert value is False             # the SSE handler ends at shutdown
    finally:
        await live.close()
        db.close()


async def test_the_poll_turns_database_rows_into_events(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    live = LiveCalls(db, clock=lambda: NOW, poll_s=3600)
    seen: list[object] = []
    original = live.on_event

    def record(event) -> None:
        seen.append(event)
        original(event)

    live.on_event = record            # type: ignore[method-assign]
    try:
        call = await db.execute("INSERT INTO calls(call_sid, caller, mode, started_at) VALUES "
                                "('CA9', '+15550001111', 'stream', ?)", (iso(NOW - 5),))
        await db.execute("INSERT INTO calls(call_sid, caller, mode, started_at) VALUES "
                         "('CAold', '+15550001111', 'stream', ?)", (iso(NOW - 86400),))
        await live.poll_once()
        assert [type(e).__name__ for e in seen] == ["CallStarted"]     # the stale one is not
        await db.execute("INSERT INTO call_turns(call_id, turn_index, transcript) VALUES "
                         "(?, 1, 'hello')", (call,))
        await live.poll_once()
        assert seen[-1] == CallTurn("CA9", 1, "hello")
        await live.poll_once()
        assert len(seen) == 2                                          # nothing changed
        await db.execute("UPDATE calls SET ended_at = ?, outcome = 'completed' WHERE id = ?",
                         (iso(NOW), call))
        await live.poll_once()
        assert seen[-1] == CallEnded("CA9") and live.snapshot() == []
    finally:
        await live.close()
        db.close()
