"""Exactly-once tool effects for an inbound message.

A message is answered again after a crash (the sweep finds it still 'received'). Its tools
must not run again: each run is recorded under a key made of the message's MessageSid, the
tool and its arguments, and a second answer gets the recorded result. While a tool runs, its
key is in `current_effect`, so what the tool sends (a confirmation, a notice to the owner) is
queued once per key as well (actions/notify.py, messaging outbox `dedupe_key`).

A crash after the tool's own writes but before its result is recorded runs the tool again, so
each tool writes through `write_once`: its transaction also records the write under the key
(plus the site's name) with the transaction's return value; when the tool runs again, that
transaction finds the record and returns the recorded value without writing. So the writes
and their record commit together or not at all, and the second run carries on from them (its
confirmation is queued once, its result is the same).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from .. import failpoints
from ..store.db import Database

T = TypeVar("T")
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


async def write_once(db: Database, site: str, tx: Callable[[sqlite3.Connection], T]) -> T:
    """`db.write(tx)`, once per running tool effect and `site` (a name for this write in the
    tool): the value of the first committed run, recorded in the same transaction. Outside a
    tool effect (a call, the dashboard) it is just `db.write(tx)`. `tx` returns JSON values."""
    key = current_effect.get()
    if key is None:
        return await db.write(tx)
    record = f"{key}#{site}"

    def once(conn: sqlite3.Connection) -> T:
        row = conn.execute("SELECT result FROM tool_effects WHERE key = ?", (record,)).fetchone()
        if row is not None:
            return json.loads(row[0])  # type: ignore[no-any-return]
        value = tx(conn)
        failpoints.hit("tool_writing")      # a kill here rolls back the writes with the record
        conn.execute("INSERT INTO tool_effects(key, result) VALUES (?, ?)",
                     (record, json.dumps(value)))
        return value

    value = await db.write(once)
    failpoints.hit("tool_wrote")            # committed; the tool's result is not recorded yet
    return value
