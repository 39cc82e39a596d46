"""Appointments in SQLite: booking, moving, cancelling one's own, and double booking made
impossible - by the write transaction, and by the database itself under concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from appliance.actions import appointments as appt_module
from appliance.actions.appointments import Appointments, SlotTaken
from appliance.actions.calendar import (
    Busy,
    CalendarRules,
    NotBookable,
    OpeningHours,
    Window,
    to_iso,
)
from appliance.store.db import Database

JLM = ZoneInfo("Asia/Jerusalem")
NOW = datetime(2025, 3, 16, 8, 0, tzinfo=JLM)          # Sunday morning
MONDAY = date(2025, 3, 17)


def make_rules(**kw) -> CalendarRules:
    base = dict(tz=JLM, hours=OpeningHours.parse("sun-thu 09:00-12:00"), slot_minutes=30,
                buffer_minutes=0, resource_count=1, min_notice_minutes=30)
    base.update(kw)
    return CalendarRules(**base)


async def customer(db: Database, phone: str) -> int:
    return await db.execute("INSERT INTO customers(phone) VALUES (?)", (phone,))


def wall(hour: int, minute: int = 0, day: date = MONDAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute)


async def test_book_list_move_cancel_own_appointment(db: Database) -> None:
    a = Appointments(db, make_rules())
    dana = await customer(db, "+972501111111")
    booked = await a.book(dana, wall(10), NOW, note="fridge repair", channel="call")
    assert booked.start.astimezone(JLM) == datetime(2025, 3, 17, 10, tzinfo=JLM)
    assert to_iso(booked.start) == "2025-03-17T08:00:00Z"
    assert (booked.customer_phone, booked.note, booked.resource) == ("+972501111111",
                                                                     "fridge repair", 1)
    assert [x.id for x in await a.upcoming_for(dana, NOW)] == [booked.id]
    before, after = await a.move(dana, booked.id, wall(11, 30), NOW)
    assert before.start != after.start and after.uid == booked.uid
    assert after.start.astimezone(JLM).hour == 11
    # The old time is free again, the new one is not.
    free = await a.find(Window(MONDAY, MONDAY), NOW)
    keys = [s.key(JLM)[11:] for s in free]
    assert "10:00" in keys and "11:30" not in keys
    cancelled = await a.cancel(dana, booked.id, NOW)
    assert cancelled.status == "cancelled"
    assert await a.upcoming_for(dana, NOW) == []
    log = await db.fetchall("SELECT kind FROM action_log ORDER BY id")
    assert [r["kind"] for r in log] == ["booked", "moved", "cancelled"]


async def test_move_and_cancel_only_the_customers_own_future_appointments(db: Database) -> None:
    a = Appointments(db, make_rules())
    dana = await customer(db, "+972501111111")
    eve = await customer(db, "+972502222222")
    danas = await a.book(dana, wall(10), NOW)
    with pytest.raises(NotBookable, match="not one of this customer's"):
        await a.cancel(eve, danas.id, NOW)
    with pytest.raises(NotBookable, match="not one of this customer's"):
        await a.move(eve, danas.id, wall(11), NOW)
    with pytest.raises(NotBookable, match="not one of this customer's"):
        await a.cancel(dana, 9999, NOW)
    # Past appointments cannot be changed either.
    later = datetime(2025, 3, 17, 12, tzinfo=JLM)
    with pytest.raises(NotBookable):
        await a.cancel(dana, danas.id, later)
    assert (await a.get(danas.id)).status == "booked"


async def test_a_taken_slot_and_the_per_customer_limit(db: Database) -> None:
    a = Appointments(db, make_rules(), max_per_customer=2)
    dana = await customer(db, "+972501111111")
    eve = await customer(db, "+972502222222")
    await a.book(dana, wall(9), NOW)
    with pytest.raises(SlotTaken):
        await a.book(eve, wall(9), NOW)
    with pytest.raises(NotBookable, match="already has an appointment at that time"):
        await a.book(dana, wall(9), NOW)
    await a.book(dana, wall(9, 30), NOW)
    with pytest.raises(NotBookable, match="the most allowed"):
        await a.book(dana, wall(10), NOW)


async def test_resources_allow_parallel_appointments(db: Database) -> None:
    a = Appointments(db, make_rules(resource_count=2))
    ids = [await customer(db, f"+97250333333{i}") for i in range(3)]
    first = await a.book(ids[0], wall(9), NOW)
    second = await a.book(ids[1], wall(9), NOW)
    assert (first.resource, second.resource) == (1, 2)
    with pytest.raises(SlotTaken):
        await a.book(ids[2], wall(9), NOW)


async def test_busy_times_from_an_external_calendar_and_its_failure(db: Database) -> None:
    blocked = datetime(2025, 3, 17, 9, 0, tzinfo=JLM)

    async def busy(start: datetime, end: datetime) -> list[Busy]:
        return [Busy(blocked, blocked + timedelta(minutes=60))]

    a = Appointments(db, make_rules(), external_busy=busy)
    dana = await customer(db, "+972501111111")
    keys = [s.key(JLM)[11:] for s in await a.find(Window(MONDAY, MONDAY), NOW)]
    assert keys[0] == "10:00"
    with pytest.raises(SlotTaken):
        await a.book(dana, wall(9, 30), NOW)

    async def down(start: datetime, end: datetime) -> list[Busy]:
        raise ConnectionError("unreachable")

    async def slow(start: datetime, end: datetime) -> list[Busy]:
        await asyncio.sleep(10)
        return []

    for broken in (down, slow):
        b = Appointments(db, make_rules(), external_busy=broken, external_timeout_s=0.2)
        keys = [s.key(JLM)[11:] for s in await b.find(Window(MONDAY, MONDAY), NOW)]
        assert keys[0] == "09:00"                     # the local calendar decides
    booked = await b.book(dana, wall(9), NOW)
    assert booked.status == "booked"


# -- double booking under concurrency --------------------------------------------------------

async def test_many_concurrent_bookings_of_the_last_slot_yield_exactly_one(db: Database) -> None:
    a = Appointments(db, make_rules(hours=OpeningHours.parse("mon 11:30-12:00")))
    people = [await customer(db, f"+9725044444{i:02d}") for i in range(12)]
    results = await asyncio.gather(*(a.book(p, wall(11, 30), NOW) for p in people),
                                   return_exceptions=True)
    booked = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(booked) == 1
    assert all(isinstance(r, SlotTaken) for r in refused) and len(refused) == 11
    rows = await db.fetchall("SELECT * FROM appointments WHERE status = 'booked'")
    assert len(rows) == 1


async def test_two_processes_booking_the_last_slot_at_once(tmp_path: Path) -> None:
    """Two Database objects (two writer threads, two connections - as two processes would
    have) race for the same slot; SQLite's write lock and the constraint let one win."""
    path = tmp_path / "shared.db"
    first = await Database.open(path)
    second = await Database.open(path)
    try:
        rules = make_rules(hours=OpeningHours.parse("mon 11:30-12:00"))
        ids = [await customer(first, "+972505555501"), await customer(first, "+972505555502")]
        barrier = threading.Barrier(2)
        original = appt_module._free_resource

        def slow_check(*args, **kw):
            # Both transactions are inside BEGIN IMMEDIATE here only one at a time; the
            # barrier times out for the first (the second waits for the write lock), which
            # proves the checks cannot interleave.
            try:
                barrier.wait(timeout=0.5)
            except threading.BrokenBarrierError:
                pass
            return original(*args, **kw)

        appt_module._free_resource = slow_check
        try:
            results = await asyncio.gather(
                Appointments(first, rules).book(ids[0], wall(11, 30), NOW),
                Appointments(second, rules).book(ids[1], wall(11, 30), NOW),
                return_exceptions=True)
        finally:
            appt_module._free_resource = original
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert sum(isinstance(r, SlotTaken) for r in results) == 1
    finally:
        first.close()
        second.close()


async def test_the_database_itself_refuses_double_and_overlapping_bookings(db: Database) -> None:
    dana = await customer(db, "+972501111111")
    eve = await customer(db, "+972502222222")
    insert = ("INSERT INTO appointments(uid, customer_id, resource, start_utc, end_utc) "
              "VALUES (?, ?, 1, ?, ?)")
    await db.execute(insert, ("u1", dana, "2025-03-17T08:00:00Z", "2025-03-17T08:30:00Z"))
    for start, end in (("2025-03-17T08:00:00Z", "2025-03-17T08:30:00Z"),     # same slot
                       ("2025-03-17T08:15:00Z", "2025-03-17T08:45:00Z"),     # overlapping
                       ("2025-03-17T07:45:00Z", "2025-03-17T09:00:00Z")):    # around it
        with pytest.raises(sqlite3.IntegrityError):
            await db.execute(insert, ("u2", eve, start, end))
    # Back to back is fine; moving it onto the first one is not.
    second = await db.execute(insert, ("u3", eve, "2025-03-17T08:30:00Z",
                                       "2025-03-17T09:00:00Z"))
    with pytest.raises(sqlite3.IntegrityError):
        await db.execute("UPDATE appointments SET start_utc = '2025-03-17T08:10:00Z' "
                         "WHERE id = ?", (second,))
    # A cancelled appointment frees its slot; re-activating it would double book.
    await db.execute("UPDATE appointments SET status = 'cancelled' WHERE uid = 'u1'")
    await db.execute(insert, ("u4", eve, "2025-03-17T08:00:00Z", "2025-03-17T08:30:00Z"))
    with pytest.raises(sqlite3.IntegrityError):
        await db.execute("UPDATE appointments SET status = 'booked' WHERE uid = 'u1'")
    with pytest.raises(sqlite3.IntegrityError):      # times must be exact UTC text
        await db.execute(insert, ("u5", eve, "2025-03-18 08:00", "2025-03-18 08:30"))


async def test_a_bug_in_the_check_is_still_caught_by_the_database(db: Database,
                                                                  monkeypatch) -> None:
    a = Appointments(db, make_rules())
    dana = await customer(db, "+972501111111")
    eve = await customer(db, "+972502222222")
    await a.book(dana, wall(10), NOW)
    monkeypatch.setattr(appt_module, "_free_resource", lambda *args, **kw: 1)
    with pytest.raises(SlotTaken):
        await a.book(eve, wall(10), NOW)
    assert len(await db.fetchall("SELECT id FROM appointments")) == 1


async def test_dst_day_booking_is_stored_in_utc(db: Database) -> None:
    ny = ZoneInfo("America/New_York")
    rules = CalendarRules(tz=ny, hours=OpeningHours.parse("sun 09:00-17:00"))
    a = Appointments(db, rules)
    dana = await customer(db, "+12125550100")
    now = datetime(2025, 3, 1, tzinfo=timezone.utc)
    before = await a.book(dana, datetime(2025, 3, 2, 9, 0), now)
    on = await a.book(dana, datetime(2025, 3, 9, 9, 0), now)
    assert to_iso(before.start) == "2025-03-02T14:00:00Z"
    assert to_iso(on.start) == "2025-03-09T13:00:00Z"
