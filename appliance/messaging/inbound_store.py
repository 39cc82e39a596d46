"""The SQL of inbound messages (messages_in, message_media, consent): each function takes a
sqlite3 connection and runs through ``Database.write`` or ``Database.read``."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from .rows import Handled, Inbound, InboundRow, MediaRow
from .store import iso



def insert_inbound(conn: sqlite3.Connection, msg: Inbound) -> tuple[int, bool]:
    """Store the message and its media rows; (id, True) if new, (id, False) for a retry."""
    cur = conn.execute(
        "INSERT INTO messages_in (message_sid, channel, phone, from_address, to_address, body, "
        "num_media, profile_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(message_sid) DO NOTHING",
        (msg.message_sid, msg.channel, msg.phone, msg.from_address, msg.to_address, msg.body,
         len(msg.media), msg.profile_name))
    if cur.rowcount == 0:
        row = conn.execute("SELECT id FROM messages_in WHERE message_sid = ?",
                           (msg.message_sid,)).fetchone()
        return row[0], False
    message_id = cur.lastrowid
    conn.executemany(
        "INSERT INTO message_media (message_id, position, url, content_type, kind) "
        "VALUES (?, ?, ?, ?, ?)",
        [(message_id, m.position, m.url, m.content_type, m.kind) for m in msg.media])
    return message_id, True


def start_attempt(conn: sqlite3.Connection, message_id: int) -> int:
    """Count one more answer started for this message; how many were started, this one too."""
    row = conn.execute("UPDATE messages_in SET attempts = attempts + 1 WHERE id = ? "
                       "RETURNING attempts", (message_id,)).fetchone()
    return int(row[0]) if row else 0


def open_phones(conn: sqlite3.Connection) -> list[str]:
    """Customers with messages not answered yet, oldest first."""
    rows = conn.execute("SELECT phone, MIN(id) AS first FROM messages_in WHERE state = "
                        "'received' GROUP BY phone ORDER BY first").fetchall()
    return [r["phone"] for r in rows]


def next_received(conn: sqlite3.Connection, phone: str) -> InboundRow | None:
    row = conn.execute(
        "SELECT id, message_sid, channel, phone, from_address, to_address, body, profile_name, "
        "received_at FROM messages_in WHERE state = 'received' AND phone = ? "
        "ORDER BY id LIMIT 1", (phone,)).fetchone()
    if row is None:
        return None
    media = tuple(MediaRow(**dict(m)) for m in conn.execute(
        "SELECT id, position, url, content_type, kind FROM message_media WHERE message_id = ? "
        "ORDER BY position", (row["id"],)))
    return InboundRow(**dict(row), media=media)


def complete(conn: sqlite3.Connection, msg: InboundRow, handled: Handled, now: datetime) -> bool:
    """Mark the message answered and queue its answer, atomically. False if it was already
    answered (then nothing is written)."""
    stamp = iso(now)
    cur = conn.execute(
        "UPDATE messages_in SET state = ?, kind = ?, text = ?, language = ?, error = ?, "
        "handled_at = ? WHERE id = ? AND state = 'received'",
        (handled.state, handled.kind, handled.text, handled.language, handled.error, stamp,
         msg.id))
    if cur.rowcount == 0:
        return False
    for m in handled.media:
        conn.execute(
            "UPDATE message_media SET status = ?, bytes = ?, duration_ms = ?, transcript = ?, "
            "language = ?, detail = ? WHERE id = ? AND message_id = ?",
            (m.status, m.bytes, m.duration_ms, m.transcript, m.language, m.detail, m.media_id,
             msg.id))
    if handled.consent is not None:
        conn.execute(
            "INSERT INTO customers (phone, opted_out) VALUES (?, ?) "
            "ON CONFLICT(phone) DO UPDATE SET opted_out = excluded.opted_out",
            (msg.phone, 1 if handled.consent.action == "opt_out" else 0))
        conn.execute(
            "INSERT INTO message_consent (phone, channel, action, keyword, message_id) "
            "VALUES (?, ?, ?, ?, ?)",
            (msg.phone, msg.channel, handled.consent.action, handled.consent.keyword, msg.id))
    conn.executemany(
        "INSERT INTO messages_out (in_id, part, purpose, channel, phone, to_address, "
        "from_address, body, next_attempt_at, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(msg.id, part, d.purpose, msg.channel, msg.phone, msg.from_address, msg.to_address,
          d.body, stamp, stamp, stamp) for part, d in enumerate(handled.replies)])
    return True
