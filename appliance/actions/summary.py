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


@dataclass(frozen=True)
class Exchange:
    """What the customer said, what the bot answered, which tools it ran."""

    asked: list[str]
    answered: list[str]
    tools: list[str]


def _quoted(lines: list[str], items: list[str], none: str) -> None:
    shown = items[:MAX_ASKED]
    lines.extend(f"- \"{_quote(a)}\"" for a in shown)
    if len(items) > len(shown):
        lines.append(f"- ... and {len(items) - len(shown)} more")
    if not items:
        lines.append(f"- {none}")


def _sections(talk: Exchange, done: list[str], human: list[str]) -> str:
    lines: list[str] = ["What was asked:"]
    _quoted(lines, talk.asked, "nothing (no words heard)")
    lines.append("What the bot answered:")
    _quoted(lines, talk.answered, "nothing")
    lines.append("What was done:")
    lines.extend(f"- {d}" for d in done) if done else lines.append("- nothing")
    if talk.tools:
        counts = {name: talk.tools.count(name) for name in dict.fromkeys(talk.tools)}
        lines.append("- Tools run: " + ", ".join(
            f"{name} x{n}" if n > 1 else name for name, n in counts.items()))
    lines.append("Needs a human:")
    lines.extend(f"- {h}" for h in human) if human else lines.append("- nothing")
    return "\n".join(lines)


def _exchange(rows: list[sqlite3.Row]) -> Exchange:
    """From turns rows (role, text, tool_name) in order: the bot's words before the
    customer's first (the greeting) are not an answer."""
    asked, answered, tools = [], [], []
    for row in rows:
        if row["role"] == "user":
            asked.append(row["text"])
        elif row["role"] == "assistant" and asked and row["text"].strip():
            answered.append(row["text"])
        elif row["role"] == "tool" and row["tool_name"]:
            tools.append(row["tool_name"])
    return Exchange(asked, answered, tools)


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
                 "confirmation": "Confirmation", "voicemail": "Voicemail"}


async def summarize_call(db: Database, call_id: int, tz: str = "UTC") -> Summary:
    zone = ZoneInfo(tz)

    def read(conn: sqlite3.Connection):
        call = conn.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        if call is None:
            raise LookupError(f"no call {call_id}")
        customer = (conn.execute("SELECT * FROM customers WHERE id = ?",
                                 (call["customer_id"],)).fetchone()
                    if call["customer_id"] is not None else None)
        talk = _exchange(conn.execute(
            "SELECT role, text, tool_name FROM turns WHERE call_id = ? ORDER BY id",
            (call_id,)).fetchall())
        actions = conn.execute("SELECT * FROM action_log WHERE call_id = ? ORDER BY id",
                               (call_id,)).fetchall()
        messages = conn.execute("SELECT * FROM taken_messages WHERE call_id = ? ORDER BY id",
                                (call_id,)).fetchall()
        returning = _earlier_contact(conn, call["customer_id"], call["started_at"], call_id)
        return call, customer, talk, actions, messages, returning

    call, customer, talk, actions, messages, returning = await db.read(read)
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
             f"Outcome: {_outcome(outcome, call['transfer_to'], actions)}"]
    text = "\n".join(lines) + "\n" + _sections(talk, done, human)
    name = (customer["name"] if customer is not None else None) or call["caller"] or "unknown"
    subject = f"Call from {name}: " + _headline(done, human)
    return Summary(subject, text, tuple(human),
                   customer["id"] if customer is not None else None, call_id)


def _outcome(outcome: str, transfer_to: str | None, actions: list[sqlite3.Row]) -> str:
    text = OUTCOMES.get(outcome, outcome) + (f" to {transfer_to}" if transfer_to else "")
    kinds = {a["kind"] for a in actions}
    if "transfer_unanswered" in kinds:
        text = ("transfer not answered" if outcome == "transferred"
                else f"transfer not answered, then {text}")
    return text + (", voicemail left" if "voicemail" in kinds else "")


async def summarize_conversation(db: Database, customer_id: int, since: str,
                                 tz: str = "UTC", until: str = "9999") -> Summary:
    """A messaging conversation (turns without a call) of one customer from `since` to
    `until` (ISO UTC text, as stored; both included)."""
    zone = ZoneInfo(tz)

    def read(conn: sqlite3.Connection):
        customer = conn.execute("SELECT * FROM customers WHERE id = ?",
                                (customer_id,)).fetchone()
        window = "customer_id = ? AND call_id IS NULL AND created_at >= ? AND created_at <= ?"
        args = (customer_id, since, until)
        rows = conn.execute(f"SELECT role, text, tool_name, channel, created_at FROM turns "
                            f"WHERE {window} ORDER BY id", args).fetchall()
        actions = conn.execute(f"SELECT * FROM action_log WHERE {window} ORDER BY id",
                               args).fetchall()
        messages = conn.execute(f"SELECT * FROM taken_messages WHERE {window} ORDER BY id",
                                args).fetchall()
        returning = _earlier_contact(conn, customer_id, since, None)
        return customer, rows, actions, messages, returning

    customer, rows, actions, messages, returning = await db.read(read)
    turns = [r for r in rows if r["role"] == "user"]
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
            + _sections(_exchange(rows), done, human))
    subject = f"{channels[0]} from {customer['name'] or customer['phone']}: " + \
        _headline(done, human)
    return Summary(subject, text, tuple(human), customer_id, None)


def _headline(done: list[str], human: list[str]) -> str:
    if human:
        return "needs a human"
    if done:
        return done[0].split(":")[0].lower()
    return "nothing to do"


async def _store(db: Database, summary: Summary, since: str | None,
                 until: str | None = None) -> bool:
    """Keep the summary; False when this call (or this conversation: customer and `since`)
    was summarised before (sent already)."""
    def tx(conn: sqlite3.Connection) -> bool:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO owner_summaries(call_id, customer_id, since, until, subject, "
            "text, needs_human) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (summary.call_id, summary.customer_id, since, until, summary.subject, summary.text,
             int(bool(summary.needs_human))))
        return cursor.rowcount > 0

    return await db.write(tx)


async def after_call(services: "ActionServices", call_id: int, *, final: bool = False
                     ) -> Summary | None:
    """Summarise a finished call and send it to the owner (once per call); None when it was
    sent before, the call is unknown, or it was put through to a person and the transfer's
    result (the <Dial action>, see `after_dial`) or a voicemail (call/voicemail.py) is still
    to come - unless `final` (the call has ended for Twilio)."""
    row = await services.db.fetchone("SELECT outcome, next_action FROM calls WHERE id = ?",
                                     (call_id,))
    if row is not None and not final and (row["outcome"] == "transferred"
                                          or row["next_action"] == "voicemail"):
        log.info("call %d: the summary waits for the transfer or the voicemail", call_id)
        return None
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


async def after_dial(services: "ActionServices", call_id: int | None, answered: bool
                     ) -> Summary | None:
    """The <Dial action> came: an answered transfer ends the bot's part (summarise now); an
    unanswered one goes back to the bot, whose call end summarises it, message included."""
    if call_id is None or not answered:
        return None
    return await after_call(services, call_id, final=True)


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
                             since: str, until: str = "9999") -> Summary | None:
    """Summarise a messaging conversation from `since` to `until` and send it to the owner
    (once: None when it was summarised before)."""
    summary = await summarize_conversation(services.db, customer_id, since,
                                           services.settings.business.timezone, until)
    if not await _store(services.db, summary, since, None if until == "9999" else until):
        log.info("conversation of customer %d since %s was summarised before", customer_id,
                 since)
        return None
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
