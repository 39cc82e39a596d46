"""What needs the owner's attention, from what the runtime and the database say now:
components that did not load (models missing), Gemini down or offline mode, the message and
e-mail outboxes stuck, the disk nearly full, errors in the last hour."""

from __future__ import annotations

import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .context import AdminContext

STUCK_AFTER_S = 10 * 60
LOW_DISK_BYTES = 1 << 30          # 1 GiB
LOW_DISK_SHARE = 0.05


@dataclass(frozen=True)
class DiskUse:
    path: str
    free: int
    total: int

    @property
    def low(self) -> bool:
        return self.free < LOW_DISK_BYTES or self.free < self.total * LOW_DISK_SHARE


def disk_use(path: Path) -> DiskUse | None:
    folder = path if path.is_dir() else path.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return None
    return DiskUse(str(folder), usage.free, usage.total)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def stuck_counts(conn: sqlite3.Connection, now: float) -> tuple[int, int]:
    """(WhatsApp/SMS messages not sent for 10 minutes, e-mails failed or overdue)."""
    before = _iso(now - STUCK_AFTER_S)
    messages = conn.execute(
        "SELECT count(*) FROM messages_out WHERE state IN ('pending','sending','unknown') "
        "AND created_at < ?", (before,)).fetchone()[0]
    mails = conn.execute(
        "SELECT count(*) FROM email_outbox WHERE status = 'failed' OR "
        "(status = 'pending' AND created_at < ?)", (before,)).fetchone()[0]
    return messages, mails


def llm_problem(status: dict[str, object]) -> str | None:
    mode = status.get("mode")
    gemini = status.get("gemini")
    gemini = gemini if isinstance(gemini, dict) else {}
    if mode == "none":
        return "No language model: calls cannot be answered."
    if gemini.get("configured") and gemini.get("healthy") is False:
        return (f"Gemini is not answering ({gemini.get('last_error') or 'error'}) for "
                f"{gemini.get('down_for_s', '?')} s: the local model answers meanwhile.")
    if mode == "offline":
        return "Offline mode: no Gemini key is configured, the local model answers."
    return None


async def current(ctx: AdminContext) -> list[str]:
    rt = ctx.services
    out = list(rt.problems())
    out.extend(f"{c.name}: {c.detail}" for c in rt.runtime.components.values()
               if not c.ok and not c.needed_for_calls)
    llm = llm_problem(rt.engine.status() if rt.engine is not None else {"mode": "none"})
    if llm and not any(p.startswith("conversation engine") for p in out):
        out.append(llm)
    messages, mails = await ctx.db.read(lambda c: stuck_counts(c, ctx.clock()))
    if messages:
        out.append(f"{messages} WhatsApp/SMS message(s) not sent for over 10 minutes "
                   "(outbox stuck: check the Twilio settings and the network).")
    if mails:
        out.append(f"{mails} e-mail(s) to the owner failed or overdue (check [smtp]).")
    disk = disk_use(ctx.db.path)
    if disk is not None and disk.low:
        out.append(f"Disk nearly full: {disk.free / 1e9:.1f} GB free of "
                   f"{disk.total / 1e9:.0f} GB at {disk.path}.")
    hour_ago = ctx.clock() - 3600
    recent = [e for e in ctx.errors.recent if e.at > hour_ago]
    if recent:
        out.append(f"{len(recent)} error(s) logged in the last hour; see Health.")
    return out
