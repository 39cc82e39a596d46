"""Summaries of WhatsApp/SMS conversations, sent once a conversation has gone quiet.

A conversation is a customer's messaging turns (turns without a call) after the last one an
earlier conversation summary covered (`owner_summaries.until`). Every `check_s` the sweeper
looks for conversations whose last turn is older than [notify] conversation_quiet_s and
summarises each from its first to its last turn (actions/summary.py). A turn arriving while a
summary is made lies after `until`, so it starts the next conversation: nothing is summarised
twice (a unique index on customer and start, too) and nothing is lost. After a restart the
sweeper simply finds what is due.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from .summary import after_conversation

if TYPE_CHECKING:
    from .services import ActionServices

log = logging.getLogger(__name__)

_DUE = """
SELECT t.customer_id, MIN(t.created_at) AS since, MAX(t.created_at) AS until
FROM turns t
WHERE t.call_id IS NULL AND t.customer_id IS NOT NULL
  AND t.created_at > COALESCE((SELECT MAX(s.until) FROM owner_summaries s
                               WHERE s.customer_id = t.customer_id AND s.call_id IS NULL
                                 AND s.until IS NOT NULL), '')
GROUP BY t.customer_id
HAVING MAX(t.created_at) < ? AND SUM(t.role = 'user') > 0
ORDER BY MIN(t.created_at)
"""


@dataclass(frozen=True)
class Quiet:
    customer_id: int
    since: str     # first turn of the conversation (stored text)
    until: str     # its last turn


def stamp(moment: datetime) -> str:
    """The turns table's timestamp format (UTC, milliseconds, Z)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def quiet_conversations(services: "ActionServices", now: datetime) -> list[Quiet]:
    cutoff = stamp(now - timedelta(seconds=services.config.notify.conversation_quiet_s))

    def read(conn: sqlite3.Connection) -> list[Quiet]:
        return [Quiet(r[0], r[1], r[2]) for r in conn.execute(_DUE, (cutoff,))]

    return await services.db.read(read)


async def summarise_quiet(services: "ActionServices", now: datetime) -> int:
    """Summarise every conversation that has gone quiet; returns how many were sent."""
    sent = 0
    for q in await quiet_conversations(services, now):
        if await after_conversation(services, q.customer_id, q.since, q.until) is not None:
            sent += 1
    return sent


class QuietSweeper:
    """The background task: every `check_s`, summarise the conversations gone quiet."""

    def __init__(self, services: "ActionServices", check_s: float | None = None) -> None:
        self.services = services
        quiet = services.config.notify.conversation_quiet_s
        self.check_s = check_s if check_s is not None else min(60.0, max(0.2, quiet / 4))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="quiet")

    async def _run(self) -> None:
        while True:
            try:
                await summarise_quiet(self.services, datetime.now(timezone.utc))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed sweep is retried on the next one
                log.exception("conversation summaries failed; retrying")
            await asyncio.sleep(self.check_s)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
