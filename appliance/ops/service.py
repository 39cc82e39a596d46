"""The service's life around `appliance serve`: tell systemd when it is ready, keep the watchdog
fed from the event loop, take the nightly backup, and stop gracefully.

Graceful stop (SIGTERM from `systemctl stop`/restart):
1. STOPPING=1 to systemd; a "service" component turns not-ok, so /healthz says 503 and every new
   call gets the fallback TwiML (the operator, or a polite "call back") instead of the bot;
2. live calls may finish, up to [service] drain_s (`StopPolicy.call_grace_s`);
3. the outboxes (WhatsApp/SMS and e-mail) get up to [service] flush_s to send what is due now;
4. then `server.running()` ends what is left, closes the records and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from ..messaging import store as message_store
from ..compose import Services
from ..config_types import ServiceSettings
from ..runtime import Component
from ..store.backup import BackupPolicy, default_directory, nightly_backups
from .notify import SystemdNotifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StopPolicy:
    call_grace_s: float = 45.0      # TimeoutStopSec in the unit leaves room for this + flush
    flush_s: float = 10.0
    poll_s: float = 0.1

    @classmethod
    def of(cls, service: ServiceSettings) -> StopPolicy:
        return cls(call_grace_s=service.drain_s, flush_s=service.flush_s)


def backup_policy(service: ServiceSettings, db_path: Path) -> BackupPolicy:
    return BackupPolicy(default_directory(db_path), keep=service.backup_keep,
                        hour=service.backup_hour)


@contextlib.asynccontextmanager
async def lifecycle(services: Services, notifier: SystemdNotifier | None = None,
                    policy: StopPolicy | None = None,
                    backups: BackupPolicy | None = None) -> AsyncIterator[SystemdNotifier]:
    """Around the serving part of `serve()`: READY=1 on entry (models are loaded by then),
    graceful drain on exit. The limits default to the settings' [service] section."""
    notifier = notifier or SystemdNotifier()
    service = services.settings.service
    policy = policy or StopPolicy.of(service)
    tasks = [asyncio.create_task(notifier.watchdog(), name="systemd-watchdog")]
    db = services.db
    if db is not None:
        tasks.append(asyncio.create_task(
            nightly_backups(db.path, backups or backup_policy(service, db.path)),
            name="nightly-backup"))
    problems = services.problems()
    notifier.ready("taking calls" if not problems else "NOT taking calls: " + "; ".join(problems))
    try:
        yield notifier
    finally:
        notifier.stopping(f"draining {services.calls.active_count()} call(s)")
        try:
            await drain(services, policy)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def drain(services: Services, policy: StopPolicy = StopPolicy(),
                clock: Callable[[], float] = time.monotonic) -> None:
    calls = services.calls
    services.runtime.components["service"] = Component(
        "service", False, "shutting down: new calls get the fallback", 0, True)
    deadline = clock() + policy.call_grace_s
    if calls.active_count():
        log.info("stopping: waiting up to %.0f s for %d live call(s)", policy.call_grace_s,
                 calls.active_count())
    while calls.active_count() and clock() < deadline:  # noqa: ASYNC110 - calls end in other tasks
        await asyncio.sleep(policy.poll_s)
    left = calls.active_count()
    if left:
        log.warning("stopping: %d call(s) still live after %.0f s; ending them", left,
                    policy.call_grace_s)
    try:
        await asyncio.wait_for(flush_outboxes(services, policy.poll_s), policy.flush_s)
    except TimeoutError:
        log.warning("stopping: outboxes not empty after %.0f s; the rest is sent after the "
                    "restart (nothing is lost: they are in the database)", policy.flush_s)


async def flush_outboxes(services: Services, poll_s: float) -> None:
    """Send what is due now: WhatsApp/SMS replies and notices, then the owner's e-mail."""
    outbox, db = services.outbox, services.db
    if outbox is not None and outbox.can_send and db is not None:
        outbox.notify()
        while await db.read(_messages_due):  # noqa: ASYNC110 - the state is in the database
            await asyncio.sleep(poll_s)
    email = services.actions.email if services.actions is not None else None
    if email is not None and email.configured:
        sent = await email.send_due()
        if sent:
            log.info("stopping: %d e-mail(s) sent", sent)


def _messages_due(conn: sqlite3.Connection) -> int:
    now = message_store.utcnow()
    due = 0
    for row in message_store.heads(conn):
        when = message_store.parse_iso(row.next_attempt_at) or now
        due += row.state == "sending" or (row.state == "pending" and when <= now)
    return due
