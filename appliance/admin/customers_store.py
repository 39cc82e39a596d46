"""The customer record as the owner changes it: edit name and language, delete on request.

Deleting removes the customer and everything of theirs: calls and their per-turn rows, the
conversation turns (what they said and heard), WhatsApp/SMS messages both ways with their media
records and status callbacks, appointments, messages taken, what was done, the summaries and the
summary e-mails. Kept: the opt-out/opt-in history (message_consent, the proof that a STOP was
honoured). Voice notes are not stored on the box (only Twilio's media URLs, deleted with the
message rows); calls are not recorded.
"""

from __future__ import annotations

import logging
import re
import sqlite3

log = logging.getLogger(__name__)
LANGUAGE = re.compile(r"^[a-z]{2}$")


class EditRefused(ValueError):
    """The owner's change is not acceptable; the message says why."""


def edit(conn: sqlite3.Connection, customer_id: int, name: str, language: str) -> None:
    name, language = name.strip()[:120], language.strip().lower()
    if language and not LANGUAGE.match(language):
        raise EditRefused(f"language {language!r}: use a two-letter code such as en, he or ru")
    cursor = conn.execute("UPDATE customers SET name = ?, language = ? WHERE id = ?",
                          (name or None, language or None, customer_id))
    if cursor.rowcount == 0:
        raise EditRefused(f"there is no customer {customer_id}")


def _ids(conn: sqlite3.Connection, sql: str, *args: object) -> list[int]:
    return [r[0] for r in conn.execute(sql, args)]


def _delete_in(conn: sqlite3.Connection, table: str, column: str, ids: list[int]) -> int:
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    return conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids).rowcount


def delete(conn: sqlite3.Connection, customer_id: int) -> dict[str, int]:
    """Delete the customer and all their data in the caller's transaction; rows per table."""
    row = conn.execute("SELECT phone FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        raise EditRefused(f"there is no customer {customer_id}")
    phone = row["phone"]
    calls = _ids(conn, "SELECT id FROM calls WHERE customer_id = ? OR caller = ?", customer_id,
                 phone)
    msgs_in = _ids(conn, "SELECT id FROM messages_in WHERE phone = ?", phone)
    msgs_out = _ids(conn, "SELECT id FROM messages_out WHERE phone = ? OR in_id IN "
                          "(SELECT id FROM messages_in WHERE phone = ?)", phone, phone)
    done: dict[str, int] = {}
    done["call_turns"] = _delete_in(conn, "call_turns", "call_id", calls)
    for table in ("turns", "action_log", "owner_summaries", "taken_messages", "appointments"):
        done[table] = conn.execute(f"DELETE FROM {table} WHERE customer_id = ?",
                                   (customer_id,)).rowcount
        done[table] += _delete_in(conn, table, "call_id", calls)
    done["notify_log"] = conn.execute("DELETE FROM notify_log WHERE customer_id = ?",
                                      (customer_id,)).rowcount
    keys = [f"summary:call:{c}" for c in calls]
    done["email_outbox"] = _delete_in(conn, "email_outbox", "dedupe_key", keys) + conn.execute(
        "DELETE FROM email_outbox WHERE dedupe_key LIKE ?",
        (f"summary:conversation:{customer_id}:%",)).rowcount
    done["message_status_events"] = _delete_in(conn, "message_status_events", "out_id", msgs_out)
    conn.execute(f"UPDATE messages_out SET replaces_id = NULL WHERE replaces_id IN "
                 f"({','.join('?' * len(msgs_out)) or 'NULL'})", msgs_out)
    done["messages_out"] = _delete_in(conn, "messages_out", "id", msgs_out)
    done["message_media"] = _delete_in(conn, "message_media", "message_id", msgs_in)
    done["messages_in"] = _delete_in(conn, "messages_in", "id", msgs_in)
    done["calls"] = _delete_in(conn, "calls", "id", calls)
    done["customers"] = conn.execute("DELETE FROM customers WHERE id = ?",
                                     (customer_id,)).rowcount
    log.info("admin: customer %d deleted on request (%s)", customer_id,
             ", ".join(f"{k} {v}" for k, v in done.items() if v))
    return done
