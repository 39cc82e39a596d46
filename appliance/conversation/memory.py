"""Customers and conversation turns in SQLite (tables from store/migrations/001_core.sql).

A customer is keyed by the phone number in E.164 form, whatever the channel: "whatsapp:+972..."
and a caller ID "+972..." are the same customer, so a caller who later writes on WhatsApp finds
the same record and the same history.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from dataclasses import dataclass, fields
from typing import Any

from ..store.db import Database
from .names import clean_name

_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"
LANGUAGE = re.compile(r"^[a-z]{2,3}$")
GENDERS = ("f", "m")
ANONYMOUS_PREFIX = "anonymous:"   # customers.phone of a withheld-number caller: never E.164


@dataclass(frozen=True)
class Customer:
    id: int
    phone: str              # E.164
    name: str | None
    language: str | None    # ISO 639-1
    gender: str | None      # "f" / "m" where the language needs it (Hebrew)
    notes: str = ""
    tags: str = ""
    opted_out: bool = False
    first_contact: str = ""
    last_contact: str = ""

    @property
    def anonymous(self) -> bool:
        """A caller who withheld their number: a throw-away record, one per call."""
        return self.phone.startswith(ANONYMOUS_PREFIX)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Customer":
        names = {f.name for f in fields(cls)}
        values = {k: row[k] for k in row.keys() if k in names}
        values["opted_out"] = bool(values.get("opted_out", 0))
        return cls(**values)


@dataclass(frozen=True)
class Turn:
    """One stored message of a conversation."""

    id: int
    role: str               # user, assistant, tool
    text: str               # for the bot: what the customer heard
    full_text: str | None
    interrupted: bool
    channel: str
    call_id: int | None
    model: str | None
    tool_name: str | None
    created_at: str


def normalize_phone(raw: str) -> str:
    """"whatsapp:+972 50-123 4567" -> "+972501234567"."""
    value = raw.strip()
    for prefix in ("whatsapp:", "sms:", "tel:"):
        if value.lower().startswith(prefix):
            value = value[len(prefix):]
    value = re.sub(r"[\s\-().]", "", value)
    if value.startswith("00"):
        value = "+" + value[2:]
    return value


class Memory:
    """The SQL of the conversation engine; every call runs off the event loop."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def customer(self, phone: str) -> Customer:
        """The customer with this number, created on first contact; last_contact is now."""
        number = normalize_phone(phone)

        def upsert(conn: sqlite3.Connection) -> Customer:
            row = conn.execute(
                f"INSERT INTO customers(phone) VALUES (?) ON CONFLICT(phone) DO UPDATE "
                f"SET last_contact = {_NOW} RETURNING *", (number,)).fetchone()
            return Customer.from_row(row)

        return await self.db.write(upsert)

    async def anonymous_customer(self, call_id: int | None = None) -> Customer:
        """A throw-away record for one withheld-number caller (no number to write to): a new
        one per conversation, or the one of this call (a <Gather> call opens one per turn)."""
        placeholder = ANONYMOUS_PREFIX + secrets.token_hex(8)

        def tx(conn: sqlite3.Connection) -> Customer:
            if call_id is not None:
                row = conn.execute(
                    "SELECT c.* FROM calls JOIN customers c ON c.id = calls.customer_id "
                    "WHERE calls.id = ? AND c.phone LIKE ?",
                    (call_id, ANONYMOUS_PREFIX + "%")).fetchone()
                if row is not None:
                    return Customer.from_row(row)
            row = conn.execute("INSERT INTO customers(phone, tags) VALUES (?, 'anonymous') "
                               "RETURNING *", (placeholder,)).fetchone()
            if call_id is not None:
                conn.execute("UPDATE calls SET customer_id = ? WHERE id = ?", (row["id"], call_id))
            return Customer.from_row(row)

        return await self.db.write(tx)

    async def call_identity(self, call_id: int | None) -> tuple[str, bool]:
        """(StirVerstat of this call's caller ID or "", whether the caller read back a code on
        this call) - a <Gather> call opens a conversation per turn, so it is kept per call."""
        if call_id is None:
            return "", False
        row = await self.db.fetchone(
            "SELECT attestation, EXISTS(SELECT 1 FROM verification_codes v WHERE v.call_id = "
            "calls.id AND v.state = 'verified') AS verified FROM calls WHERE id = ?", (call_id,))
        return (row["attestation"], bool(row["verified"])) if row else ("", False)

    async def update_customer(self, customer_id: int, **values: Any) -> Customer:
        """Set name / language / gender (only those given); returns the updated record."""
        allowed = {"name", "language", "gender", "notes", "tags"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown customer fields: {sorted(unknown)}")
        if values.get("name") is not None:
            values["name"] = clean_name(values["name"])      # InvalidName (a ValueError)

        def update(conn: sqlite3.Connection) -> Customer:
            if values:
                assignments = ", ".join(f"{k} = ?" for k in values)
                conn.execute(f"UPDATE customers SET {assignments} WHERE id = ?",
                             (*values.values(), customer_id))
            row = conn.execute("SELECT * FROM customers WHERE id = ?",
                               (customer_id,)).fetchone()
            return Customer.from_row(row)

        return await self.db.write(update)

    async def add_turn(self, customer_id: int, channel: str, call_id: int | None, role: str,
                       text: str, *, full_text: str | None = None, interrupted: bool = False,
                       model: str | None = None, tool_name: str | None = None) -> int:
        return await self.db.execute(
            "INSERT INTO turns(customer_id, channel, call_id, role, text, full_text, "
            "interrupted, model, tool_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (customer_id, channel, call_id, role, text, full_text, int(interrupted), model,
             tool_name))

    async def set_heard(self, turn_id: int, heard: str, interrupted: bool) -> None:
        await self.db.execute("UPDATE turns SET text = ?, interrupted = ? WHERE id = ?",
                              (heard, int(interrupted), turn_id))

    async def recent_turns(self, customer_id: int, limit: int,
                           roles: tuple[str, ...] = ("user", "assistant")) -> list[Turn]:
        """The last `limit` turns of this customer on any channel, oldest first."""
        marks = ", ".join("?" for _ in roles)
        rows = await self.db.fetchall(
            f"SELECT id, role, text, full_text, interrupted, channel, call_id, model, "
            f"tool_name, created_at FROM turns WHERE customer_id = ? AND role IN ({marks}) "
            f"ORDER BY id DESC LIMIT ?", (customer_id, *roles, limit))
        return [Turn(id=r["id"], role=r["role"], text=r["text"], full_text=r["full_text"],
                     interrupted=bool(r["interrupted"]), channel=r["channel"],
                     call_id=r["call_id"], model=r["model"], tool_name=r["tool_name"],
                     created_at=r["created_at"]) for r in reversed(rows)]
