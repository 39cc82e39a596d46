"""Exactly-once tool effects for an inbound message.

A message is answered again after a crash (the sweep finds it still 'received'). Its tools
must not run again: each run is recorded under a key made of the message's MessageSid, the
tool and its arguments, and a second answer gets the recorded result. While a tool runs, its
key is in `current_effect`, so what the tool sends (a confirmation, a notice to the owner) is
queued once per key as well (actions/notify.py, messaging outbox `dedupe_key`).

Left open: a crash in the instant between a tool's own writes and the record of its result
runs that tool again (its messages are still queued once); closing it needs each tool to
write its effect and the record in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from .. import failpoints
from ..store.db import Database

current_effect: ContextVar[str | None] = ContextVar("current_effect", default=None)


def effect_key(message_sid: str, tool: str, args: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(args, sort_keys=True, ensure_ascii=False).encode())
    return f"{message_sid}:{tool}:{digest.hexdigest()[:16]}"


async def run_once(db: Database, key: str | None,
                   run: Callable[[], Awaitable[str]]) -> str:
    """`run()`'s result, recorded under `key`; the recorded one when there is (no key: run)."""
    if key is None:
        return await run()
    row = await db.fetchone("SELECT result FROM tool_effects WHERE key = ?", (key,))
    if row is not None:
        return str(row["result"])
    token = current_effect.set(key)
    try:
        result = await run()
    finally:
        current_effect.reset(token)
    await db.execute("INSERT INTO tool_effects(key, result) VALUES (?, ?) "
                     "ON CONFLICT(key) DO NOTHING", (key, result))
    failpoints.hit("tool_recorded")
    return result
