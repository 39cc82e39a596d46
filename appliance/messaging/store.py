"""The outbox's SQL (messages_out, migration 004) and the time format of every messaging table.
Every function takes a sqlite3 connection and is run through ``Database.write`` (one
transaction on the writer thread) or ``Database.read``. Rows come back as the frozen dataclasses
of rows.py; inbound messages' SQL is in inbound_store.py.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

from . import window
from .rows import Customer, OutRow

# ----------------------------------------------------------------------------------------------
# Time


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """'2025-01-31T09:15:02.123Z': the format SQLite's defaults use, so text order = time order."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


_OUT_COLUMNS = ("o.id, o.in_id, i.message_sid AS in_sid, o.part, o.purpose, o.channel, o.phone, "
                "o.to_address, o.from_address, o.body, o.content_sid, o.state, o.attempts, "
                "o.next_attempt_at, o.attempt_started_at, o.twilio_sid")


def _out_row(row: sqlite3.Row) -> OutRow:
    return OutRow(**dict(row))


# ----------------------------------------------------------------------------------------------
# Outbox


def enqueue(conn: sqlite3.Connection, *, channel: str, phone: str, to_address: str,
            from_address: str, bodies: list[str], purpose: str, now: datetime,
            dedupe_key: str | None = None) -> list[int]:
    """Queue a message nobody asked for (a notification); it goes out in order with replies.
    With ``dedupe_key`` (part n keyed "<key>#n"), a key queued before queues nothing."""
    stamp = iso(now)
    ids = []
    for part, body in enumerate(bodies):
        cur = conn.execute(
            "INSERT INTO messages_out (in_id, part, purpose, channel, phone, to_address, "
            "from_address, body, next_attempt_at, created_at, updated_at, dedupe_key) "
            "VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (part, purpose, channel, phone, to_address, from_address, body, stamp, stamp, stamp,
             f"{dedupe_key}#{part}" if dedupe_key else None))
        if cur.rowcount:
            ids.append(cur.lastrowid)
    return ids


def resume_in_flight(conn: sqlite3.Connection, look_at: datetime) -> int:
    """At start-up: a row still 'sending' was in flight when the process died. Twilio may have
    it, so it becomes 'unknown' and is looked up (at ``look_at``) before any new attempt."""
    return conn.execute(
        "UPDATE messages_out SET state = 'unknown', next_attempt_at = ?, updated_at = ?, "
        "error = 'in flight when the process stopped' WHERE state = 'sending'",
        (iso(look_at), iso(utcnow()), )).rowcount


def expire_sending(conn: sqlite3.Connection, out_id: int, look_at: datetime) -> int:
    """A row left 'sending' by an attempt that never finished (its task died, a write after the
    REST call failed) would block its customer's queue until a restart: make it 'unknown',
    so it is looked up at Twilio (at ``look_at``) and then adopted or sent again."""
    return conn.execute(
        "UPDATE messages_out SET state = 'unknown', next_attempt_at = ?, updated_at = ?, "
        "error = 'attempt never finished' WHERE id = ? AND state = 'sending'",
        (iso(look_at), iso(utcnow()), out_id)).rowcount


def heads(conn: sqlite3.Connection) -> list[OutRow]:
    """The oldest unfinished row of every customer (only it may go out: order per customer)."""
    rows = conn.execute(
        f"SELECT {_OUT_COLUMNS} FROM messages_out o LEFT JOIN messages_in i ON i.id = o.in_id "
        "WHERE o.id IN (SELECT MIN(id) FROM messages_out "
        "WHERE state IN ('pending','sending','unknown') GROUP BY phone) ORDER BY o.id").fetchall()
    return [_out_row(r) for r in rows]


def out_row(conn: sqlite3.Connection, out_id: int) -> OutRow | None:
    row = conn.execute(f"SELECT {_OUT_COLUMNS} FROM messages_out o LEFT JOIN messages_in i "
                       "ON i.id = o.in_id WHERE o.id = ?", (out_id,)).fetchone()
    return _out_row(row) if row else None


@dataclass(frozen=True)
class Claim:
    """The row, now 'sending', to hand to Twilio; or why it will not be sent."""

    row: OutRow | None
    skipped: str = ""


def claim(conn: sqlite3.Connection, out_id: int, now: datetime, template_sid: str,
          allowed_prefixes: tuple[str, ...] = ()) -> Claim:
    """pending -> sending (attempts + 1), after the last checks: an allowed country prefix
    ([security] allowed_prefixes)? opted out? 24-hour window?"""
    row = out_row(conn, out_id)
    if row is None or row.state != "pending":
        return Claim(None, "no longer pending")
    stamp = iso(now)
    if allowed_prefixes and not row.phone.startswith(allowed_prefixes):
        reason = "not sent: the number is outside [security] allowed_prefixes"
        conn.execute("UPDATE messages_out SET state = 'failed', error = ?, updated_at = ? "
                     "WHERE id = ?", (reason, stamp, out_id))
        return Claim(None, reason)
    if row.purpose != "opt_out" and customer(conn, row.phone).opted_out:
        conn.execute("UPDATE messages_out SET state = 'cancelled', error = ?, updated_at = ? "
                     "WHERE id = ?", ("the customer opted out", stamp, out_id))
        return Claim(None, "opted_out")
    content_sid = row.content_sid
    if row.channel == "whatsapp" and content_sid is None:
        last = conn.execute("SELECT MAX(received_at) FROM messages_in WHERE phone = ? AND "
                            "channel = 'whatsapp'", (row.phone,)).fetchone()[0]
        decision = window.decide("whatsapp", parse_iso(last), now, template_sid)
        if decision.mode == "blocked":
            conn.execute("UPDATE messages_out SET state = 'failed', error = ?, updated_at = ? "
                         "WHERE id = ?", (decision.reason, stamp, out_id))
            return Claim(None, decision.reason)
        if decision.mode == "template":
            content_sid = template_sid
    conn.execute(
        "UPDATE messages_out SET state = 'sending', attempts = attempts + 1, content_sid = ?, "
        "attempt_started_at = ?, updated_at = ? WHERE id = ?",
        (content_sid, stamp, stamp, out_id))
    return Claim(out_row(conn, out_id))


def mark_accepted(conn: sqlite3.Connection, out_id: int, sid: str, status: str | None,
                  now: datetime) -> None:
    """Twilio answered 201 with a SID. A status callback may have got here first."""
    stamp = iso(now)
    conn.execute(
        "UPDATE messages_out SET twilio_sid = COALESCE(twilio_sid, ?), "
        "twilio_status = COALESCE(twilio_status, ?), sent_at = COALESCE(sent_at, ?), "
        "state = CASE WHEN state IN ('pending','sending','unknown') THEN 'sent' ELSE state END, "
        "error = NULL, error_code = NULL, updated_at = ? WHERE id = ?",
        (sid, status, stamp, stamp, out_id))


def mark_retry(conn: sqlite3.Connection, out_id: int, state: str, error: str,
               code: int | None, next_at: datetime, now: datetime) -> None:
    """Back to 'pending' (certainly not sent) or 'unknown' (maybe sent) until ``next_at``."""
    assert state in ("pending", "unknown")
    conn.execute(
        "UPDATE messages_out SET state = ?, error = ?, error_code = ?, next_attempt_at = ?, "
        "updated_at = ? WHERE id = ? AND state IN ('sending','unknown','pending')",
        (state, error, code, iso(next_at), iso(now), out_id))


def mark_failed(conn: sqlite3.Connection, out_id: int, error: str, code: int | None,
                now: datetime) -> None:
    conn.execute(
        "UPDATE messages_out SET state = 'failed', error = ?, error_code = ?, updated_at = ? "
        "WHERE id = ? AND state IN ('sending','unknown','pending')",
        (error, code, iso(now), out_id))


def use_template(conn: sqlite3.Connection, out_id: int, template_sid: str, error: str,
                 code: int | None, now: datetime) -> None:
    """Twilio refused free-form text (outside the window): retry the row as the template."""
    conn.execute(
        "UPDATE messages_out SET state = 'pending', content_sid = ?, error = ?, error_code = ?, "
        "next_attempt_at = ?, updated_at = ? WHERE id = ? AND state = 'sending'",
        (template_sid, error, code, iso(now), iso(now), out_id))


def sids_taken(conn: sqlite3.Connection, sids: list[str]) -> set[str]:
    if not sids:
        return set()
    marks = ",".join("?" * len(sids))
    return {r[0] for r in conn.execute(
        f"SELECT twilio_sid FROM messages_out WHERE twilio_sid IN ({marks})", sids)}


def customer(conn: sqlite3.Connection, phone: str) -> Customer:
    """Whether the customer opted out, and their language."""
    row = conn.execute("SELECT opted_out, language FROM customers WHERE phone = ?",
                       (phone,)).fetchone()
    if row is None:
        return Customer(False, None)
    return Customer(bool(row["opted_out"]), row["language"])


# ----------------------------------------------------------------------------------------------
# Status callbacks

# Twilio's message statuses in lifecycle order; failed/undelivered end it.
STATUS_RANK = {"accepted": 1, "scheduled": 1, "queued": 1, "sending": 2, "sent": 3,
               "delivered": 4, "read": 5, "undelivered": 6, "failed": 6, "canceled": 6}
_STATE_FOR_STATUS = {"sent": "sent", "delivered": "delivered", "read": "read",
                     "undelivered": "undelivered", "failed": "failed", "canceled": "failed"}
_STATE_RANK = {"pending": 0, "sending": 0, "unknown": 0, "sent": 3, "delivered": 4, "read": 5,
               "undelivered": 6, "failed": 6, "cancelled": 6}


@dataclass(frozen=True)
class StatusOutcome:
    out_id: int | None               # None: not a message of ours
    state: str | None                # the row's state afterwards
    template_queued: bool = False    # a 63016 failure queued the template instead


def apply_status(conn: sqlite3.Connection, sid: str, status: str, error_code: int | None,
                 out_hint: int | None, template_sid: str, now: datetime) -> StatusOutcome:
    """Record one status callback. ``out_hint`` is the ``out`` query parameter we put in the
    callback URL: it lets a row whose API answer was lost (crash, timeout) adopt its SID."""
    stamp = iso(now)
    row = conn.execute("SELECT id FROM messages_out WHERE twilio_sid = ?", (sid,)).fetchone()
    if row is None and out_hint is not None:
        row = conn.execute("SELECT id FROM messages_out WHERE id = ? AND twilio_sid IS NULL",
                           (out_hint,)).fetchone()
        if row is not None:
            conn.execute("UPDATE messages_out SET twilio_sid = ?, sent_at = COALESCE(sent_at, ?),"
                         " state = CASE WHEN state IN ('pending','sending','unknown') THEN "
                         "'sent' ELSE state END, updated_at = ? WHERE id = ?",
                         (sid, stamp, stamp, row["id"]))
    out_id = row["id"] if row is not None else None
    conn.execute("INSERT INTO message_status_events (out_id, twilio_sid, status, error_code, "
                 "received_at) VALUES (?, ?, ?, ?, ?)", (out_id, sid, status, error_code, stamp))
    if out_id is None:
        return StatusOutcome(None, None)
    current = out_row(conn, out_id)
    assert current is not None
    new_state = _STATE_FOR_STATUS.get(status)
    state = current.state
    if new_state and _STATE_RANK[new_state] > _STATE_RANK.get(state, 0):
        state = new_state
    conn.execute("UPDATE messages_out SET state = ?, twilio_status = ?, error_code = "
                 "COALESCE(?, error_code), updated_at = ? WHERE id = ?",
                 (state, status, error_code, stamp, out_id))
    queued = False
    if (status in ("failed", "undelivered") and error_code == window.ERROR_OUTSIDE_WINDOW
            and current.channel == "whatsapp" and current.content_sid is None and template_sid):
        exists = conn.execute("SELECT 1 FROM messages_out WHERE replaces_id = ?",
                              (out_id,)).fetchone()
        if exists is None:
            conn.execute(
                "INSERT INTO messages_out (in_id, part, purpose, replaces_id, channel, phone, "
                "to_address, from_address, body, content_sid, next_attempt_at, created_at, "
                "updated_at) VALUES (NULL, 0, 'template', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (out_id, current.channel, current.phone, current.to_address,
                 current.from_address, current.body, template_sid, stamp, stamp, stamp))
            queued = True
    return StatusOutcome(out_id, state, queued)
