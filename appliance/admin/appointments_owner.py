"""What the owner does to the calendar: move or cancel an appointment (the customer is told
through the same outbox the bot uses, actions/notify.py), block and unblock a slot.

A blocked slot is a booked appointment of a pseudo-customer (phone `owner:blocked`) on every
resource, so the bot's slot search and the database's no-overlap triggers treat it as taken.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime

from ..actions.appointments import Appointment
from ..actions.calendar import NotBookable, slot_at, to_iso, to_stamp
from ..actions.notify import Delivery
from ..actions.services import ActionServices
from ..conversation.memory import Customer
from .views_customers import BLOCK_PHONE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OwnerChange:
    message: str             # for the owner's page
    delivery: Delivery | None = None


def _delivery_words(d: Delivery | None) -> str:
    if d is None:
        return ""
    if d.ok:
        return f" The customer was told by {d.channel}."
    return f" The customer could NOT be told ({d.status.replace('_', ' ')})."


async def _tell(s: ActionServices, appt: Appointment, body: str, reason: str
                ) -> Delivery | None:
    row = await s.db.fetchone("SELECT * FROM customers WHERE id = ?", (appt.customer_id,))
    if row is None or row["phone"] == BLOCK_PHONE:
        return None
    return await s.outbound.to_customer(Customer.from_row(row), appt.channel or "sms", body,
                                        reason)


async def move(s: ActionServices, appointment_id: int, wall: datetime) -> OwnerChange:
    current = await s.appointments.get(appointment_id)
    if current is None or current.status != "booked":
        raise NotBookable(f"appointment {appointment_id} is not booked")
    before, after = await s.appointments.move(current.customer_id, appointment_id, wall,
                                              s.now(), channel="admin")
    name = s.settings.business.name
    delivery = await _tell(s, after, f"{name}: your appointment on {before.label(s.rules)} has "
                                     f"been moved to {after.label(s.rules)}. Reply if that time "
                                     "does not suit you.", "appointment_moved")
    return OwnerChange(f"Moved to {after.label(s.rules)}.{_delivery_words(delivery)}", delivery)


async def cancel(s: ActionServices, appointment_id: int) -> OwnerChange:
    current = await s.appointments.get(appointment_id)
    if current is None or current.status != "booked":
        raise NotBookable(f"appointment {appointment_id} is not booked")
    done = await s.appointments.cancel(current.customer_id, appointment_id, s.now(),
                                       channel="admin")
    name = s.settings.business.name
    delivery = await _tell(s, done, f"{name}: we are sorry, your appointment on "
                                    f"{done.label(s.rules)} has been cancelled. Reply or call us "
                                    "to find another time.", "appointment_cancelled")
    return OwnerChange(f"Cancelled {done.label(s.rules)}.{_delivery_words(delivery)}", delivery)


def _block_customer(conn: sqlite3.Connection) -> int:
    conn.execute("INSERT INTO customers(phone, name) VALUES (?, 'Blocked by the owner') "
                 "ON CONFLICT(phone) DO NOTHING", (BLOCK_PHONE,))
    return conn.execute("SELECT id FROM customers WHERE phone = ?", (BLOCK_PHONE,)).fetchone()[0]


async def block(s: ActionServices, wall: datetime, note: str) -> OwnerChange:
    """Block the slot at local `wall` on every resource still free; says how many."""
    slot = slot_at(s.rules, wall, s.now())
    now = to_stamp(s.now())

    def tx(conn: sqlite3.Connection) -> int:
        cid = _block_customer(conn)
        blocked = 0
        for resource in range(1, s.rules.resource_count + 1):
            try:
                conn.execute("INSERT INTO appointments(uid, customer_id, resource, start_utc, "
                             "end_utc, note, channel, created_at, updated_at) VALUES "
                             "(?, ?, ?, ?, ?, ?, 'admin', ?, ?)",
                             (f"{uuid.uuid4()}@appliance", cid, resource, to_iso(slot.start),
                              to_iso(slot.end), note[:200] or "blocked", now, now))
                blocked += 1
            except sqlite3.IntegrityError:
                continue            # that resource is booked then: the booking stays
        return blocked

    blocked = await s.db.write(tx)
    label = slot.label(s.rules.tz)
    if not blocked:
        raise NotBookable(f"{label} is already fully booked; nothing to block")
    log.info("admin: blocked %s on %d resource(s)", to_iso(slot.start), blocked)
    left = s.rules.resource_count - blocked
    return OwnerChange(f"Blocked {label}." + (f" {left} resource(s) were already booked and "
                                              "keep their appointment." if left else ""))
