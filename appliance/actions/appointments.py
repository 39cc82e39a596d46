"""Appointments in SQLite: find free slots, book, move, cancel, list a customer's own.

Double booking is impossible at three levels:
1. every booking and move runs in one write transaction (Database.write: BEGIN IMMEDIATE on the
   single writer thread), which re-reads the day's bookings, picks a free resource and inserts;
2. a partial UNIQUE index on (resource, start_utc) of booked appointments;
3. triggers that abort any insert or update making two booked appointments of one resource
   overlap (store/migrations/005_actions.sql) - so even another process, or a bug, cannot.

Move and cancel take the customer id from the conversation (never from the model) and touch
only that customer's booked, future appointments. Busy times from an external calendar (Google)
are asked for before the transaction; when it cannot be reached the local calendar decides.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Awaitable, Callable, Sequence

from ..conversation.effects import write_once
from ..store.db import Database
from .calendar import (
    Busy,
    CalendarRules,
    NotBookable,
    Slot,
    Window,
    describe_time,
    free_resource,
    free_slots,
    from_iso,
    slot_at,
    to_iso,
    to_stamp,
)

log = logging.getLogger(__name__)

# (start, end) UTC -> busy times of the owner's other calendar; may raise on network trouble.
ExternalBusy = Callable[[datetime, datetime], Awaitable[Sequence[Busy]]]


class SlotTaken(NotBookable):
    """The slot was free a moment ago and is not any more."""


@dataclass(frozen=True)
class Appointment:
    id: int
    uid: str
    customer_id: int
    resource: int
    start: datetime          # aware UTC
    end: datetime            # aware UTC
    status: str              # booked, cancelled
    note: str
    channel: str
    call_id: int | None
    created_at: str
    updated_at: str
    customer_name: str | None = None
    customer_phone: str = ""

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Appointment":
        keys = row.keys()
        return cls(id=row["id"], uid=row["uid"], customer_id=row["customer_id"],
                   resource=row["resource"], start=from_iso(row["start_utc"]),
                   end=from_iso(row["end_utc"]), status=row["status"], note=row["note"],
                   channel=row["channel"], call_id=row["call_id"], created_at=row["created_at"],
                   updated_at=row["updated_at"],
                   customer_name=row["customer_name"] if "customer_name" in keys else None,
                   customer_phone=row["customer_phone"] if "customer_phone" in keys else "")

    def label(self, rules: CalendarRules) -> str:
        return describe_time(self.start, rules.tz)


_SELECT = ("SELECT a.*, c.name AS customer_name, c.phone AS customer_phone FROM appointments a "
           "JOIN customers c ON c.id = a.customer_id")


class Appointments:
    """The calendar's SQL. `now` is always passed in (aware), so tests choose the clock."""

    def __init__(self, db: Database, rules: CalendarRules, *, max_per_customer: int = 3,
                 external_busy: ExternalBusy | None = None,
                 external_timeout_s: float = 3.0, mirror: bool = False) -> None:
        self.db = db
        # mirror: every change marks the row for the Google Calendar sync (google_state).
        self.sync_state = "pending" if mirror else ""
        self.rules = rules
        self.max_per_customer = max_per_customer
        self.external_busy = external_busy
        self.external_timeout_s = external_timeout_s

    # -- reading ---------------------------------------------------------------------------

    async def busy(self, start: datetime, end: datetime) -> list[Busy]:
        """Booked appointments (per resource) and external busy times (all resources)."""
        pad = self.rules.buffer
        rows = await self.db.fetchall(
            "SELECT resource, start_utc, end_utc FROM appointments WHERE status = 'booked' "
            "AND start_utc < ? AND end_utc > ?", (to_iso(end + pad), to_iso(start - pad)))
        found = [Busy(from_iso(r["start_utc"]), from_iso(r["end_utc"]), r["resource"])
                 for r in rows]
        return found + await self._external(start, end)

    async def _external(self, start: datetime, end: datetime) -> list[Busy]:
        if self.external_busy is None:
            return []
        try:
            times = await asyncio.wait_for(self.external_busy(start, end),
                                           self.external_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the local calendar stays authoritative
            log.warning("external calendar unavailable (%s); local calendar only",
                        type(exc).__name__ if not str(exc) else exc)
            return []
        return [Busy(b.start, b.end, None) for b in times]

    async def find(self, window: Window, now: datetime, limit: int = 8) -> list[Slot]:
        days = window.days()
        if not days:
            return []
        tz = self.rules.tz
        start = datetime.combine(days[0], datetime.min.time(), tz)
        end = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), tz)
        busy = await self.busy(start, end)
        return free_slots(self.rules, window, busy, now, limit)

    async def upcoming_for(self, customer_id: int, now: datetime) -> list[Appointment]:
        rows = await self.db.fetchall(
            f"{_SELECT} WHERE a.customer_id = ? AND a.status = 'booked' AND a.end_utc > ? "
            "ORDER BY a.start_utc", (customer_id, to_iso(now)))
        return [Appointment.from_row(r) for r in rows]

    async def between(self, start: datetime, end: datetime,
                      include_cancelled: bool = False) -> list[Appointment]:
        status = "" if include_cancelled else "AND a.status = 'booked' "
        rows = await self.db.fetchall(
            f"{_SELECT} WHERE a.start_utc < ? AND a.end_utc > ? {status}ORDER BY a.start_utc",
            (to_iso(end), to_iso(start)))
        return [Appointment.from_row(r) for r in rows]

    async def get(self, appointment_id: int) -> Appointment | None:
        row = await self.db.fetchone(f"{_SELECT} WHERE a.id = ?", (appointment_id,))
        return Appointment.from_row(row) if row else None

    # -- writing ---------------------------------------------------------------------------

    async def book(self, customer_id: int, wall: datetime, now: datetime, *, note: str = "",
                   channel: str = "", call_id: int | None = None) -> Appointment:
        """Book the slot starting at local wall time `wall` (naive). NotBookable / SlotTaken
        carry the reason for the model."""
        slot = slot_at(self.rules, wall, now)
        external = await self._external(slot.start, slot.end)
        rules, limit, sync = self.rules, self.max_per_customer, self.sync_state

        def tx(conn: sqlite3.Connection) -> int:
            held = conn.execute(
                "SELECT start_utc, end_utc FROM appointments WHERE customer_id = ? AND "
                "status = 'booked' AND end_utc > ?", (customer_id, to_iso(now))).fetchall()
            if len(held) >= limit:
                raise NotBookable(f"this customer already has {len(held)} upcoming "
                                  f"appointments, the most allowed; move or cancel one instead")
            if any(r["start_utc"] < to_iso(slot.end) and to_iso(slot.start) < r["end_utc"]
                   for r in held):
                raise NotBookable("this customer already has an appointment at that time")
            resource = _free_resource(conn, rules, slot, external)
            try:
                appointment_id = conn.execute(
                    "INSERT INTO appointments(uid, customer_id, resource, start_utc, end_utc, "
                    "note, channel, call_id, created_at, updated_at, google_state) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (f"{uuid.uuid4()}@appliance", customer_id, resource, to_iso(slot.start),
                     to_iso(slot.end), note[:200], channel, call_id, to_stamp(now), to_stamp(now),
                     sync)
                ).lastrowid
            except sqlite3.IntegrityError as exc:
                if "overlaps" in str(exc) or "UNIQUE" in str(exc):
                    raise SlotTaken(f"{slot.label(rules.tz)} was just taken") from None
                raise
            log_in(conn, customer_id, call_id, channel, "booked",
                 f"#{appointment_id} {describe_time(slot.start, rules.tz)}"
                 + (f" ({note[:80]})" if note else ""), now)
            return int(appointment_id)

        appointment_id = await write_once(self.db, "book", tx)
        log.info("appointment %d booked for customer %d at %s", appointment_id, customer_id,
                 to_iso(slot.start))
        booked = await self.get(appointment_id)
        assert booked is not None
        return booked

    async def move(self, customer_id: int, appointment_id: int, wall: datetime, now: datetime,
                   *, channel: str = "", call_id: int | None = None
                   ) -> tuple[Appointment, Appointment]:
        """Move one of this customer's own future appointments; (before, after)."""
        before = await self._own(customer_id, appointment_id, now)
        slot = slot_at(self.rules, wall, now)
        external = await self._external(slot.start, slot.end)
        rules, sync = self.rules, self.sync_state

        def tx(conn: sqlite3.Connection) -> None:
            row = _own_row(conn, customer_id, appointment_id, now)
            resource = _free_resource(conn, rules, slot, external, ignore_id=appointment_id)
            try:
                conn.execute("UPDATE appointments SET start_utc = ?, end_utc = ?, resource = ?, "
                             "updated_at = ?, google_state = ? WHERE id = ?",
                             (to_iso(slot.start), to_iso(slot.end), resource, to_stamp(now),
                              sync, appointment_id))
            except sqlite3.IntegrityError as exc:
                if "overlaps" in str(exc) or "UNIQUE" in str(exc):
                    raise SlotTaken(f"{slot.label(rules.tz)} was just taken") from None
                raise
            log_in(conn, customer_id, call_id, channel, "moved",
                 f"#{appointment_id} {describe_time(from_iso(row['start_utc']), rules.tz)} -> "
                 f"{describe_time(slot.start, rules.tz)}", now)

        await write_once(self.db, "move", tx)
        after = await self.get(appointment_id)
        assert after is not None
        log.info("appointment %d moved to %s", appointment_id, to_iso(slot.start))
        return before, after

    async def cancel(self, customer_id: int, appointment_id: int, now: datetime, *,
                     channel: str = "", call_id: int | None = None) -> Appointment:
        rules, sync = self.rules, self.sync_state

        def tx(conn: sqlite3.Connection) -> None:
            row = _own_row(conn, customer_id, appointment_id, now)
            conn.execute("UPDATE appointments SET status = 'cancelled', updated_at = ?, "
                         "google_state = ? WHERE id = ?", (to_stamp(now), sync, appointment_id))
            log_in(conn, customer_id, call_id, channel, "cancelled",
                 f"#{appointment_id} {describe_time(from_iso(row['start_utc']), rules.tz)}", now)

        await write_once(self.db, "cancel", tx)
        log.info("appointment %d cancelled", appointment_id)
        cancelled = await self.get(appointment_id)
        assert cancelled is not None
        return cancelled

    async def _own(self, customer_id: int, appointment_id: int, now: datetime) -> Appointment:
        return await self.db.read(lambda c: Appointment.from_row(
            _own_row(c, customer_id, appointment_id, now, joined=True)))


def _own_row(conn: sqlite3.Connection, customer_id: int, appointment_id: int, now: datetime,
             joined: bool = False) -> sqlite3.Row:
    """This customer's booked, not yet ended appointment, or NotBookable."""
    sql = (f"{_SELECT} WHERE a.id = ? AND a.customer_id = ?" if joined else
           "SELECT * FROM appointments a WHERE a.id = ? AND a.customer_id = ?")
    row = conn.execute(sql + " AND a.status = 'booked' AND a.end_utc > ?",
                       (appointment_id, customer_id, to_iso(now))).fetchone()
    if row is None:
        raise NotBookable(f"appointment {appointment_id} is not one of this customer's upcoming "
                          "appointments; use list_my_appointments")
    return row


def _free_resource(conn: sqlite3.Connection, rules: CalendarRules, slot: Slot,
                   external: Sequence[Busy], ignore_id: int | None = None) -> int:
    pad = rules.buffer
    rows = conn.execute(
        "SELECT id, resource, start_utc, end_utc FROM appointments WHERE status = 'booked' "
        "AND start_utc < ? AND end_utc > ?",
        (to_iso(slot.end + pad), to_iso(slot.start - pad))).fetchall()
    busy = [Busy(from_iso(r["start_utc"]), from_iso(r["end_utc"]), r["resource"])
            for r in rows if r["id"] != ignore_id]
    resource = free_resource(rules, slot, [*busy, *external])
    if resource is None:
        raise SlotTaken(f"{slot.label(rules.tz)} is already taken")
    return resource


def log_in(conn: sqlite3.Connection, customer_id: int | None, call_id: int | None, channel: str,
         kind: str, detail: str, now: datetime, needs_human: bool = False) -> None:
    conn.execute("INSERT INTO action_log(customer_id, call_id, channel, kind, detail, "
                 "needs_human, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (customer_id, call_id, channel, kind, detail, int(needs_human), to_stamp(now)))


async def log_action(db: Database, customer_id: int | None, call_id: int | None, channel: str,
                     kind: str, detail: str, now: datetime, needs_human: bool = False) -> None:
    """Record something a tool did (or refused) for the owner's summary (once per effect)."""
    await write_once(db, f"log:{kind}", lambda c: log_in(c, customer_id, call_id, channel,
                                                          kind, detail, now, needs_human))
