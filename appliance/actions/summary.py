"""The owner's summary of a call or a messaging conversation, and sending it.

Built from the database only (no model, so it works offline and says exactly what happened):
who (name, number, new or returning), when (local time, duration, channel), what was asked
(the customer's own words), what was done (action_log: bookings, moves, cancellations,
messages, transfers, information sent) and what needs a human (messages taken, transfers that
could not happen, failed calls).

`after_call(services, call_id)` is called by the call code when a call ends; it stores the
summary once per call and sends it to the owner through `Outbound` (e-mail outbox and/or
WhatsApp). `after_conversation(...)` does the same for a messaging conversation.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..store.db import Database
from .calendar import describe_time

if TYPE_CHECKING:
    from .services import ActionServices

log = logging.getLogger(__name__)

MAX_ASKED = 8          # customer messages quoted
MAX_QUOTE = 200        # characters of each
OUTCOMES = {"completed": "completed", "transferred": "transferred",
            "caller_hung_up": "the caller hung up", "failed": "FAILED (technical problem)",
            "message_taken": "message taken", "in_progress": "still in progress"}
CHANNELS = {"call": "phone call", "gather": "phone call", "whatsapp": "WhatsApp",
            "sms": "SMS", "chat": "chat"}


@dataclass(frozen=True)
class Summary:
    subject: str
    text: str
    needs_human: tuple[str, ...]
    customer_id: int | None
    call_id: int | None = None


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE].rsplit(" ", 1)[0] + " ..."


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = max(0, int((end - start).total_seconds()))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _who(customer: sqlite3.Row | None, fallback_phone: str, returning: bool) -> str:
    if customer is None:
        return fallback_phone or "unknown caller (number withheld)"
    name = customer["name"] or "name not given"
    phone = customer["phone"] or fallback_phone
    first = _parse(customer["first_contact"])
    extra = f", customer since {first:%d %b %Y}" if returning and first else ", new customer"
    return f"{name}, {phone}{extra}"


def _earlier_contact(conn: sqlite3.Connection, customer_id: int | None, before: str,
                     call_id: int | None) -> bool:
    """Did this customer talk to the business before `before` (another call or message)?"""
    if customer_id is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM turns WHERE customer_id = ? AND role = 'user' AND created_at < ? "
        "AND (call_id IS NULL OR call_id IS NOT ?) LIMIT 1",
        (customer_id, before, call_id)).fetchone()
    return row is not None


def _sections(asked: list[str], done: list[str], human: list[str]) -> str:
    lines: list[str] = []
    lines.append("What was asked:")
    if asked:
        shown = asked[:MAX_ASKED]
        lines.extend(f"- \"{_quote(a)}\"" for a in shown)
        if len(asked) > len(shown):
            lines.append(f"- ... and {len(asked) - len(shown)} more")
    else:
        lines.append("- nothing (no words heard)")
    lines.append("What was done:")
    lines.extend(f"- {d}" for d in done) if done else lines.append("- nothing")
    lines.append("Needs a human:")
    lines.extend(f"- {h}" for h in human) if human else lines.append("- nothing")
    return "\n".join(lines)


def _done_and_human(actions: list[sqlite3.Row], messages: list[sqlite3.Row]
                    ) -> tuple[list[str], list[str]]:
    done, human = [], []
    for a in actions:
        text = _ACTION_WORDS.get(a["kind"], a["kind"]) + (f": {a['detail']}" if a["detail"]
                                                          else "")
        done.append(text)
        if a["needs_human"] and a["kind"] != "message":
            human.append(text)
    for m in messages:
        urgent = "URGENT " if m["urgent"] else ""
        who = f" (from {m['name']})" if m["name"] else ""
        human.append(f"{urgent}message{who}: \"{_quote(m['text'])}\"")
    return done, human


_ACTION_WORDS = {"booked": "Booked", "moved": "Moved", "cancelled": "Cancelled",
                 "message": "Took a message", "info_sent": "Sent information",
                 "transfer": "Transferred the call", "transfer_refused": "Could not transfer",
                 "transfer_unanswered": "Transfer not answered", "refused": "Refused",
                 "confirmation": "Confirmation"}


async def summarize_call(db: Database, call_id: int, tz: str = "UTC") -> Summary:
    zone = ZoneInfo(tz)

    def read(conn: sqlite3.Connection):
        call = conn.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        if call is None:
            raise LookupError(f"no call {call_id}")
        customer = (conn.execute("SELECT * FROM customers WHERE id = ?",
                                 (call["customer_id"],)).fetchone()
                    if call["customer_id"] is not None else None)
        asked = [r["text"] for r in conn.execute(
            "SELECT text FROM turns WHERE call_id = ? AND role = 'user' ORDER BY id",
            (call_id,))]
        actions = conn.execute("SELECT * FROM action_log WHERE call_id = ? ORDER BY id",
                               (call_id,)).fetchall()
        messages = conn.execute("SELECT * FROM taken_messages WHERE call_id = ? ORDER BY id",
                                (call_id,)).fetchall()
        returning = _earlier_contact(conn, call["customer_id"], call["started_at"], call_id)
        return call, customer, asked, actions, messages, returning

    call, customer, asked, actions, messages, returning = await db.read(read)
    started, ended = _parse(call["started_at"]), _parse(call["ended_at"])
    done, human = _done_and_human(actions, messages)
    outcome = call["outcome"]
    if outcome == "failed":
        human.append("the call failed" + (f" ({call['error']})" if call["error"] else "")
                     + "; call the customer back")
    who = _who(customer, call["caller"], returning)
    when = describe_time(started, zone, with_year=True) if started else "?"
    duration = _duration(started, ended)
    lines = [f"Who: {who}",
             f"When: {when}" + (f", {duration}" if duration else "") + " (phone call)",
             f"Outcome: {OUTCOMES.get(outcome, outcome)}"
             + (f" to {call['transfer_to']}" if call["transfer_to"] else "")]
    text = "\n".join(lines) + "\n" + _sections(asked, done, human)
    name = (customer["name"] if customer is not None else None) or call["caller"] or "unknown"
    subject = f"Call from {name}: " + _headline(done, human)
    return Summary(subject, text, tuple(human),
                   customer["id"] if customer is not None else None, call_id)


async def summarize_conversation(db: Database, customer_id: int, since: str,
                                 tz: str = "UTC") -> Summary:
    """A messaging conversation (turns without a call) of one customer since `since`
    (ISO UTC text, as stored)."""
    zone = ZoneInfo(tz)

    def read(conn: sqlite3.Connection):
        customer = conn.execute("SELECT * FROM customers WHERE id = ?",
                                (customer_id,)).fetchone()
        turns = conn.execute(
            "SELECT text, channel, created_at FROM turns WHERE customer_id = ? AND "
            "call_id IS NULL AND role = 'user' AND created_at >= ? ORDER BY id",
            (customer_id, since)).fetchall()
        actions = conn.execute(
            "SELECT * FROM action_log WHERE customer_id = ? AND call_id IS NULL AND "
            "created_at >= ? ORDER BY id", (customer_id, since)).fetchall()
        messages = conn.execute(
            "SELECT * FROM taken_messages WHERE customer_id = ? AND call_id IS NULL AND "
            "created_at >= ? ORDER BY id", (customer_id, since)).fetchall()
        returning = _earlier_contact(conn, customer_id, since, None)
        return customer, turns, actions, messages, returning

    customer, turns, actions, messages, returning = await db.read(read)
    if customer is None:
        raise LookupError(f"no customer {customer_id}")
    done, human = _done_and_human(actions, messages)
    channels = sorted({CHANNELS.get(t["channel"], t["channel"]) for t in turns}) or ["messages"]
    first = _parse(turns[0]["created_at"]) if turns else _parse(since)
    last = _parse(turns[-1]["created_at"]) if turns else None
    when = describe_time(first, zone, with_year=True) if first else "?"
    if last and first and last.date() == first.date() and last > first:
        when += f" to {last.astimezone(zone):%H:%M}"
    elif last and first and last > first:
        when += " to " + describe_time(last, zone)
    text = (f"Who: {_who(customer, '', returning)}\n"
            f"When: {when} ({', '.join(channels)})\n"
            + _sections([t["text"] for t in turns], done, human))
    subject = f"{channels[0]} from {customer['name'] or customer['phone']}: " + \
        _headline(done, human)
    return Summary(subject, text, tuple(human), customer_id, None)


def _headline(done: list[str], human: list[str]) -> str:
    if human:
        return "needs a human"
    if done:
        return done[0].split(":")[0].lower()
    return "nothing to do"


async def _store(db: Database, summary: Summary, since: str | None) -> bool:
    """Keep the summary; False when this call was summarised before (sent already)."""
    def tx(conn: sqlite3.Connection) -> bool:
        cursor = conn.execute(
            "INSERT INTO owner_summaries(call_id, customer_id, since, subject, text, "
            "needs_human) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(call_id) DO NOTHING",
            (summary.call_id, summary.customer_id, since, summary.subject, summary.text,
             int(bool(summary.needs_human))))
        return cursor.rowcount > 0

    return await db.write(tx)


async def after_call(services: "ActionServices", call_id: int) -> Summary | None:
    """Summarise a finished call and send it to the owner (once per call); None when it was
    sent before or the call is unknown."""
    try:
        summary = await summarize_call(services.db, call_id,
                                       services.settings.business.timezone)
    except LookupError:
        log.warning("no call %d to summarise", call_id)
        return None
    summary = await _with_call_link(services, summary, call_id)
    if not await _store(services.db, summary, None):
        log.info("call %d was summarised before; not sent again", call_id)
        return None
    await _send(services, summary, f"summary:call:{call_id}")
    return summary


async def _with_call_link(services: "ActionServices", summary: Summary, call_id: int
                          ) -> Summary:
    """The owner's link to the call's page on the dashboard (needs [server] public_url)."""
    base = services.settings.server.public_url
    row = await services.db.fetchone("SELECT call_sid FROM calls WHERE id = ?", (call_id,))
    if not base or row is None:
        return summary
    return replace(summary, text=f"{summary.text}\n\nCall page: {base}/admin/calls/"
                                 f"{row['call_sid']}")


async def after_conversation(services: "ActionServices", customer_id: int,
                             since: str) -> Summary | None:
    """Summarise a messaging conversation since `since` and send it to the owner."""
    summary = await summarize_conversation(services.db, customer_id, since,
                                           services.settings.business.timezone)
    await _store(services.db, summary, since)
    await _send(services, summary, f"summary:conversation:{customer_id}:{since}")
    return summary


async def _send(services: "ActionServices", summary: Summary, key: str) -> None:
    notify = services.config.notify
    deliveries = await services.outbound.to_owner(
        summary.subject, summary.text, "summary", customer_id=summary.customer_id,
        counted=False, dedupe_key=key, email=notify.summary_email,
        whatsapp=notify.summary_whatsapp)
    log.info("summary %s: %s", key,
             ", ".join(f"{d.channel} {d.status}" for d in deliveries) or "no owner configured")
