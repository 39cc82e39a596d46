"""The calendar rules (pure): hours, the slot grid, daylight saving, holidays, free slots, and
the natural-language window parser."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from appliance.actions.calendar import (
    Busy,
    CalendarRules,
    NotBookable,
    OpeningHours,
    Slot,
    Window,
    day_slots,
    free_slots,
    parse_holidays,
    parse_local,
    slot_at,
    to_iso,
)
from appliance.actions.nlwindow import parse_window
from appliance.actions.settings import AppointmentSettings
from appliance.config import ConfigError
from appliance.config_actions import read_appointments
from appliance.config_reader import Reader

UTC = timezone.utc
JLM = ZoneInfo("Asia/Jerusalem")
NYC = ZoneInfo("America/New_York")


def rules(tz: ZoneInfo = JLM, hours: str = "sun-thu 09:00-18:00; fri 09:00-13:00",
          **kw) -> CalendarRules:
    return CalendarRules(tz=tz, hours=OpeningHours.parse(hours), **kw)


def keys(slots: list[Slot], tz: ZoneInfo) -> list[str]:
    return [s.key(tz)[11:] for s in slots]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- opening hours ---------------------------------------------------------------------------

def test_hours_parse_wrap_around_ranges_and_lunch_breaks() -> None:
    h = OpeningHours.parse("sun-thu 09:00-18:00; fri 09:00-13:00")
    assert h.days[6] == ((540, 1080),) and h.days[3] == ((540, 1080),)
    assert h.days[4] == ((540, 780),) and h.days[5] == ()
    assert h.describe() == "Sun-Thu 09:00-18:00; Fri 09:00-13:00"
    lunch = OpeningHours.parse("mon 09:00-12:00; mon 13:00-17:00")
    assert lunch.days[0] == ((540, 720), (780, 1020))
    assert OpeningHours.parse("sat 00:00-24:00").days[5] == ((0, 1440),)


@pytest.mark.parametrize("spec", ["monday 09:00-17:00", "mon 9-17", "mon 18:00-09:00",
                                  "mon 09:00-12:00; mon 11:00-13:00", "mon 09:00-25:00",
                                  "xyz 09:00-10:00"])
def test_bad_hours_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        OpeningHours.parse(spec)


def appointments(values: dict[str, str]) -> AppointmentSettings:
    """[appointments] alone, through the one config reader (unknown keys refused too)."""
    reader = Reader.of({"appointments": values})
    settings = read_appointments(reader)
    reader.check_unknown_keys()
    return settings


def test_settings_validate_and_name_section_and_key() -> None:
    s = appointments({"slot_minutes": "45", "holidays": "2025-04-13, 2025-04-20..2025-04-22"})
    assert s.slot_minutes == 45
    assert s.holidays == (date(2025, 4, 13), date(2025, 4, 20), date(2025, 4, 21),
                          date(2025, 4, 22))
    assert appointments({"slot_minutes": "", "hours": ""}) == AppointmentSettings()
    with pytest.raises(ConfigError, match=r"\[appointments\] hours"):
        appointments({"hours": "weekdays 9 to 5"})
    with pytest.raises(ConfigError, match=r"\[appointments\] slot_minutes"):
        appointments({"slot_minutes": "0"})
    with pytest.raises(ConfigError, match=r"\[appointments\] holidays"):
        appointments({"holidays": "13/04/2025"})
    with pytest.raises(ConfigError, match=r"\[appointments\] colour"):
        appointments({"colour": "red"})
    assert parse_holidays("") == ()


# -- the grid --------------------------------------------------------------------------------

def test_grid_with_buffer_and_a_slot_ending_exactly_at_closing_time() -> None:
    r = rules(hours="fri 09:00-13:00", slot_minutes=45, buffer_minutes=15)
    friday = date(2025, 3, 14)
    assert keys(day_slots(r, friday), JLM) == ["09:00", "10:00", "11:00", "12:00"]
    last = day_slots(r, friday)[-1]
    assert last.end.astimezone(JLM).time() == time(12, 45)
    # 30-minute slots: the last one starts 12:30 and ends at 13:00 sharp, none after.
    r30 = rules(hours="fri 09:00-13:00", slot_minutes=30)
    grid = day_slots(r30, friday)
    assert grid[-1].key(JLM).endswith("12:30")
    assert grid[-1].end.astimezone(JLM).time() == time(13, 0)
    # A slot that would run past closing time is not offered (50 min in a 4 h day: 4 of them).
    r50 = rules(hours="fri 09:00-13:00", slot_minutes=50, buffer_minutes=10)
    assert keys(day_slots(r50, friday), JLM) == ["09:00", "10:00", "11:00", "12:00"]
    assert day_slots(r50, friday)[-1].end.astimezone(JLM).time() == time(12, 50)


def test_the_last_slot_at_closing_time_can_be_booked_until_it_starts() -> None:
    r = rules(hours="fri 09:00-13:00", slot_minutes=30)
    now = datetime(2025, 3, 14, 12, 0, tzinfo=JLM)
    assert slot_at(r, datetime(2025, 3, 14, 12, 30), now).end.astimezone(JLM).hour == 13
    with pytest.raises(NotBookable, match="not one of the appointment times"):
        slot_at(r, datetime(2025, 3, 14, 13, 0), now)   # that would end after closing
    with pytest.raises(NotBookable, match="not one of the appointment times"):
        slot_at(r, datetime(2025, 3, 14, 12, 15), now)  # off the grid
    with pytest.raises(NotBookable, match="too soon or already past"):
        slot_at(r, datetime(2025, 3, 14, 11, 30), now)


def test_holidays_and_closed_days_have_no_slots() -> None:
    r = rules(holidays=frozenset({date(2025, 4, 13)}))
    assert day_slots(r, date(2025, 4, 13)) == []            # a Sunday, normally open
    assert day_slots(r, date(2025, 4, 12)) == []            # Saturday: closed
    assert len(day_slots(r, date(2025, 4, 14))) == 18        # Monday 09-18
    now = datetime(2025, 4, 10, 8, tzinfo=JLM)
    with pytest.raises(NotBookable, match="holiday"):
        slot_at(r, datetime(2025, 4, 13, 10, 0), now)
    with pytest.raises(NotBookable, match="closed on Sat"):
        slot_at(r, datetime(2025, 4, 12, 10, 0), now)
    window = Window(date(2025, 4, 12), date(2025, 4, 14))
    found = free_slots(r, window, [], now)
    assert {s.start.astimezone(JLM).date() for s in found} == {date(2025, 4, 14)}


# -- daylight saving -------------------------------------------------------------------------

@pytest.mark.parametrize("tz, day, before_utc, after_utc", [
    # Israel: clocks go forward on Friday 2025-03-28 at 02:00, back on Sunday 2025-10-26.
    (JLM, date(2025, 3, 28), 7, 6),
    (JLM, date(2025, 10, 26), 6, 7),
    # New York: forward on Sunday 2025-03-09 at 02:00, back on Sunday 2025-11-02.
    (NYC, date(2025, 3, 9), 14, 13),
    (NYC, date(2025, 11, 2), 13, 14),
])
def test_slots_keep_their_wall_clock_time_across_daylight_saving_changes(
        tz: ZoneInfo, day: date, before_utc: int, after_utc: int) -> None:
    r = rules(tz, hours="sun-sat 09:00-17:00")
    first_before = day_slots(r, day - timedelta(days=1))[0]
    first_on = day_slots(r, day)[0]
    assert first_before.key(tz).endswith("T09:00") and first_on.key(tz).endswith("T09:00")
    assert first_before.start.hour == before_utc
    assert first_on.start.hour == after_utc
    assert len(day_slots(r, day)) == 16
    assert all(s.end - s.start == timedelta(minutes=30) for s in day_slots(r, day))


def test_spring_forward_night_skips_the_missing_hour() -> None:
    r = rules(NYC, hours="sun 00:00-05:00", slot_minutes=30)
    grid = day_slots(r, date(2025, 3, 9))
    assert keys(grid, NYC) == ["00:00", "00:30", "01:00", "01:30", "03:00", "03:30", "04:00",
                               "04:30"]
    # 01:30 EST + 30 min is 03:00 EDT: consecutive in real time, nothing overlaps.
    assert grid[3].end == grid[4].start
    with pytest.raises(NotBookable, match="not one of the appointment times"):
        slot_at(r, datetime(2025, 3, 9, 2, 30), datetime(2025, 3, 1, tzinfo=UTC))


def test_fall_back_night_uses_the_first_of_the_repeated_hour_only() -> None:
    r = rules(JLM, hours="sun 00:00-04:00", slot_minutes=30)
    grid = day_slots(r, date(2025, 10, 26))        # 02:00 IDT -> 01:00 IST
    assert keys(grid, JLM) == ["00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "03:00",
                               "03:30"]
    starts = [s.start for s in grid]
    assert len(set(starts)) == len(starts)
    assert all(a.end <= b.start for a, b in zip(grid, grid[1:]))
    assert to_iso(grid[3].start) == "2025-10-25T22:30:00Z"   # 01:30 IDT
    assert to_iso(grid[4].start) == "2025-10-26T00:00:00Z"   # 02:00 IST


def test_a_24_hour_day_on_a_short_and_a_long_day() -> None:
    r = rules(NYC, hours="sun 00:00-24:00", slot_minutes=60)
    assert len(day_slots(r, date(2025, 3, 9))) == 23
    assert len(day_slots(r, date(2025, 11, 2))) == 24   # the wall grid: 00..23 once each


# -- free slots ------------------------------------------------------------------------------

def test_free_slots_respect_bookings_buffer_resources_notice_and_horizon() -> None:
    r = rules(hours="mon 09:00-12:00", slot_minutes=30, buffer_minutes=10,
              resource_count=2, min_notice_minutes=60, max_days_ahead=10)
    monday = date(2025, 3, 17)
    grid = day_slots(r, monday)
    assert keys(grid, JLM) == ["09:00", "09:40", "10:20", "11:00"]
    now = datetime(2025, 3, 17, 8, 30, tzinfo=JLM)         # 09:00 is within the notice
    window = Window(monday, monday)
    assert keys(free_slots(r, window, [], now), JLM) == ["09:40", "10:20", "11:00"]
    booked = [Busy(grid[1].start, grid[1].end, 1)]
    assert keys(free_slots(r, window, booked, now), JLM) == ["09:40", "10:20", "11:00"]
    booked.append(Busy(grid[1].start, grid[1].end, 2))      # both resources taken
    assert keys(free_slots(r, window, booked, now), JLM) == ["10:20", "11:00"]
    # An external busy time blocks every resource, widened by the buffer.
    external = [Busy(grid[3].start + timedelta(minutes=5), grid[3].start + timedelta(minutes=10))]
    assert keys(free_slots(r, window, booked + external, now), JLM) == ["10:20"]
    far = Window(monday + timedelta(days=7), monday + timedelta(days=14))
    days = {s.start.astimezone(JLM).date() for s in free_slots(r, far, [], now)}
    assert days == {monday + timedelta(days=7)}             # the 14th day is past the horizon


def test_window_times_of_day() -> None:
    r = rules(hours="mon 09:00-18:00")
    monday = date(2025, 3, 17)
    now = datetime(2025, 3, 16, 12, tzinfo=JLM)
    morning = free_slots(r, Window(monday, monday, None, time(12)), [], now)
    assert keys(morning, JLM)[-1] == "11:30"
    after4 = free_slots(r, Window(monday, monday, time(16)), [], now)
    assert keys(after4, JLM) == ["16:00", "16:30", "17:00", "17:30"]
    assert len(free_slots(r, Window(monday, monday), [], now, limit=3)) == 3


def test_parse_local_refuses_zoned_times() -> None:
    assert parse_local("2025-03-17 16:00") == datetime(2025, 3, 17, 16, 0)
    with pytest.raises(ValueError):
        parse_local("2025-03-17T16:00Z")
    with pytest.raises(ValueError):
        parse_local("2025-03-17T16:00+02:00")


# -- natural-language windows ----------------------------------------------------------------

MONDAY = date(2025, 3, 17)


@pytest.mark.parametrize("text, first, earliest, latest", [
    ("tomorrow morning", date(2025, 3, 18), None, time(12)),
    ("next Tuesday after 4", date(2025, 3, 18), time(16), None),
    ("can I come today?", MONDAY, None, None),
    ("this afternoon", MONDAY, time(12), time(17)),
    ("on Monday", MONDAY, None, None),             # a weekday alone includes today
    ("next monday", date(2025, 3, 24), None, None),
    ("friday at 3", date(2025, 3, 21), time(15), time(16)),
    ("thursday before 11am", date(2025, 3, 20), None, time(11)),
    ("wednesday evening", date(2025, 3, 19), time(17), None),
    ("after 4:30pm the day after tomorrow", date(2025, 3, 19), time(16, 30), None),
    ("2025-04-02", date(2025, 4, 2), None, None),
    ("April 2nd in the morning", date(2025, 4, 2), None, time(12)),
    ("מחר בבוקר", date(2025, 3, 18), None, time(12)),
    ("ביום שלישי אחרי 4", date(2025, 3, 18), time(16), None),
    ("завтра утром", date(2025, 3, 18), None, time(12)),
    ("в пятницу после 4", date(2025, 3, 21), time(16), None),
])
def test_parse_window(text: str, first: date, earliest: time | None,
                      latest: time | None) -> None:
    window = parse_window(text, MONDAY)
    assert window is not None
    assert (window.first_day, window.earliest, window.latest) == (first, earliest, latest)
    assert window.last_day == first


def test_parse_window_without_a_day_searches_a_week_and_ignores_small_talk() -> None:
    window = parse_window("anything after 4 works", MONDAY)
    assert window == Window(MONDAY, MONDAY + timedelta(days=6), time(16), None)
    assert parse_window("next week", MONDAY) == Window(date(2025, 3, 24), date(2025, 3, 30))
    assert parse_window("my fridge is broken", MONDAY) is None
