"""The business's calendar rules, pure: opening hours, the slot grid, holidays, free slots.

No I/O and no clock: `now` is always passed in. Times are aware datetimes; a `Slot` is kept in
UTC and shown in the business's time zone (zoneinfo), so daylight-saving days come out right:
the grid is laid out in wall-clock time (09:00, 09:30 ...), a wall time that does not exist on
a spring-forward night is skipped, and on a fall-back night only the first of the two 01:30s
is used (nobody opens then anyway, but 24-hour calendars must not break).

A day's grid: for each opening interval, a slot starts at the opening time and every
slot_minutes + buffer_minutes after it, as long as the slot itself (not its buffer) ends by
closing time. A slot is free when one of the `resource_count` resources has no busy time
overlapping it, busy times being widened by the buffer on both sides.

Natural language windows ("tomorrow morning", "next Tuesday after 4") are parsed by
nlwindow.py into the same `Window` the tools build from structured arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Iterable, Sequence
from zoneinfo import ZoneInfo

from ..hours import DAY_NAMES, WEEKDAYS, OpeningHours

if TYPE_CHECKING:
    from .settings import AppointmentSettings

__all__ = ["DAY_NAMES", "WEEKDAYS", "OpeningHours", "NotBookable"]

UTC = timezone.utc
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
               "Dec")
PARTS_OF_DAY: dict[str, tuple[time | None, time | None]] = {
    "any": (None, None),
    "morning": (None, time(12, 0)),
    "afternoon": (time(12, 0), time(17, 0)),
    "evening": (time(17, 0), None),
}



class NotBookable(Exception):
    """This time cannot be booked; the message is meant for the model (and the customer)."""


def parse_holidays(spec: str) -> tuple[date, ...]:
    """"2025-04-13, 2025-04-20..2025-04-22" -> the dates, sorted. ValueError when unreadable."""
    found: set[date] = set()
    for raw in re.split(r"[,;\s]+", spec.strip()):
        if not raw:
            continue
        first, sep, last = raw.partition("..")
        try:
            a = date.fromisoformat(first)
            b = date.fromisoformat(last) if sep else a
        except ValueError:
            raise ValueError(f"{raw!r} is not a date like 2025-04-13") from None
        if b < a or (b - a).days > 366:
            raise ValueError(f"{raw!r} is not a range of at most a year")
        found.update(a + timedelta(days=i) for i in range((b - a).days + 1))
    return tuple(sorted(found))


# -- the rules and the grid ------------------------------------------------------------------

@dataclass(frozen=True)
class CalendarRules:
    tz: ZoneInfo
    hours: OpeningHours
    slot_minutes: int = 30
    buffer_minutes: int = 0
    holidays: frozenset[date] = frozenset()
    resource_count: int = 1
    min_notice_minutes: int = 0
    max_days_ahead: int = 60

    @classmethod
    def from_settings(cls, a: "AppointmentSettings", timezone_name: str) -> "CalendarRules":
        """From [appointments] and [business] timezone."""
        return cls(tz=ZoneInfo(timezone_name), hours=OpeningHours.parse(a.hours),
                   slot_minutes=a.slot_minutes, buffer_minutes=a.buffer_minutes,
                   holidays=frozenset(a.holidays), resource_count=a.resource_count,
                   min_notice_minutes=a.min_notice_minutes, max_days_ahead=a.max_days_ahead)

    @property
    def slot(self) -> timedelta:
        return timedelta(minutes=self.slot_minutes)

    @property
    def buffer(self) -> timedelta:
        return timedelta(minutes=self.buffer_minutes)

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)

    def today(self, now: datetime) -> date:
        return self.local(now).date()

    def is_open_day(self, day: date) -> bool:
        return day not in self.holidays and bool(self.hours.intervals(day))


@dataclass(frozen=True, order=True)
class Slot:
    """One bookable period. `start`/`end` are aware UTC datetimes."""

    start: datetime
    end: datetime

    def local_start(self, tz: ZoneInfo) -> datetime:
        return self.start.astimezone(tz)

    def key(self, tz: ZoneInfo) -> str:
        """The local wall-clock start as the tools exchange it: "2025-03-12T16:00"."""
        return self.local_start(tz).strftime("%Y-%m-%dT%H:%M")

    def label(self, tz: ZoneInfo) -> str:
        """"Wed 12 Mar 16:00" in the business's time."""
        return describe_time(self.start, tz)


def describe_time(moment: datetime, tz: ZoneInfo, with_year: bool = False) -> str:
    local = moment.astimezone(tz)
    text = f"{DAY_NAMES[local.weekday()]} {local.day} {MONTH_NAMES[local.month - 1]}"
    if with_year:
        text += f" {local.year}"
    return text + f" {local:%H:%M}"


def wall_to_utc(day: date, minutes: int, tz: ZoneInfo) -> datetime | None:
    """Local wall time `minutes` after midnight of `day` in UTC; None if it does not exist
    (the hour skipped when clocks go forward). Ambiguous times take the first occurrence."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minutes)
    local = wall.replace(tzinfo=tz, fold=0)
    utc = local.astimezone(UTC)
    back = utc.astimezone(tz).replace(tzinfo=None)
    if back != wall:
        return None
    return utc


def day_slots(rules: CalendarRules, day: date) -> list[Slot]:
    """The grid of `day` (a local date): every slot the business offers, booked or not."""
    if not rules.is_open_day(day):
        return []
    out = []
    step = rules.slot_minutes + rules.buffer_minutes
    for opens, closes in rules.hours.intervals(day):
        start = opens
        while start + rules.slot_minutes <= closes:
            begin = wall_to_utc(day, start, rules.tz)
            close = wall_to_utc(day, closes, rules.tz) if closes < 24 * 60 else \
                wall_to_utc(day + timedelta(days=1), 0, rules.tz)
            if begin is not None:
                end = begin + rules.slot
                # On a short (spring-forward) day a slot may not run past closing time.
                if close is None or end <= close:
                    out.append(Slot(begin, end))
            start += step
    return out


@dataclass(frozen=True)
class Busy:
    """A time that is taken: an appointment on one resource, or (resource None) everything,
    like the owner's busy times from Google Calendar."""

    start: datetime
    end: datetime
    resource: int | None = None


@dataclass(frozen=True)
class Window:
    """Where to look for slots: local dates (inclusive) and local times of day.

    A slot is in the window when it starts at or after `earliest` and before `latest`.
    """

    first_day: date
    last_day: date
    earliest: time | None = None
    latest: time | None = None

    def days(self) -> list[date]:
        return [self.first_day + timedelta(days=i)
                for i in range((self.last_day - self.first_day).days + 1)]

    def admits(self, slot: Slot, tz: ZoneInfo) -> bool:
        local = slot.local_start(tz)
        if not self.first_day <= local.date() <= self.last_day:
            return False
        at = local.time().replace(tzinfo=None)
        if self.earliest is not None and at < self.earliest:
            return False
        if self.latest is not None and at >= self.latest:
            return False
        return True

    def describe(self) -> str:
        def d(day: date) -> str:
            return f"{DAY_NAMES[day.weekday()]} {day.day} {MONTH_NAMES[day.month - 1]}"
        text = d(self.first_day) if self.first_day == self.last_day else \
            f"{d(self.first_day)} to {d(self.last_day)}"
        if self.earliest:
            text += f" from {self.earliest:%H:%M}"
        if self.latest:
            text += f" before {self.latest:%H:%M}"
        return text


def free_resource(rules: CalendarRules, slot: Slot, busy: Iterable[Busy],
                  ignore: Iterable[Busy] = ()) -> int | None:
    """The lowest resource (1..resource_count) free for `slot`, or None."""
    taken: set[int] = set()
    pad = rules.buffer
    skip = set(ignore)
    for b in busy:
        if b in skip:
            continue
        if b.start - pad < slot.end and slot.start < b.end + pad:
            if b.resource is None:
                return None
            taken.add(b.resource)
    for resource in range(1, rules.resource_count + 1):
        if resource not in taken:
            return resource
    return None


def bookable_range(rules: CalendarRules, now: datetime) -> tuple[datetime, datetime]:
    """The earliest start (now + notice) and the end of the last bookable day, in UTC."""
    earliest = now + timedelta(minutes=rules.min_notice_minutes)
    last_day = rules.today(now) + timedelta(days=rules.max_days_ahead)
    horizon = datetime.combine(last_day + timedelta(days=1), time(), rules.tz).astimezone(UTC)
    return earliest, horizon


def free_slots(rules: CalendarRules, window: Window, busy: Sequence[Busy], now: datetime,
               limit: int | None = None) -> list[Slot]:
    """Free slots inside `window`, soonest first, none before now + min notice or after
    max_days_ahead."""
    earliest, horizon = bookable_range(rules, now)
    out: list[Slot] = []
    for day in window.days():
        for slot in day_slots(rules, day):
            if slot.start < earliest or slot.start >= horizon:
                continue
            if not window.admits(slot, rules.tz):
                continue
            if free_resource(rules, slot, busy) is None:
                continue
            out.append(slot)
            if limit is not None and len(out) >= limit:
                return out
    return out


def parse_local(text: str) -> datetime:
    """"2025-03-12T16:00" / "2025-03-12 16:00" -> a naive local wall time (ValueError)."""
    value = text.strip().replace(" ", "T")
    if value.endswith("Z") or re.search(r"[+-]\d\d:?\d\d$", value[10:]):
        raise ValueError("give the local time without a time zone, like 2025-03-12T16:00")
    return datetime.fromisoformat(value).replace(second=0, microsecond=0)


def slot_at(rules: CalendarRules, wall: datetime, now: datetime) -> Slot:
    """The grid slot starting at local wall time `wall` (naive), checked against the rules
    (not against bookings). Raises NotBookable with a reason the model can relay."""
    day = wall.date()
    day_label = f"{DAY_NAMES[day.weekday()]} {day.day} {MONTH_NAMES[day.month - 1]}"
    label = f"{day_label} {wall:%H:%M}"
    if day in rules.holidays:
        raise NotBookable(f"the business is closed on {day_label} (holiday)")
    if not rules.hours.intervals(day):
        raise NotBookable(f"the business is closed on {DAY_NAMES[day.weekday()]}days")
    start = wall_to_utc(day, wall.hour * 60 + wall.minute, rules.tz)
    match = next((s for s in day_slots(rules, day) if s.start == start), None)
    if match is None:
        raise NotBookable(f"{label} is not one of the appointment times; use find_free_slots")
    earliest, horizon = bookable_range(rules, now)
    if match.start < earliest:
        raise NotBookable(f"{label} is too soon or already past")
    if match.start >= horizon:
        raise NotBookable(f"{label} is more than {rules.max_days_ahead} days ahead")
    return match


def to_iso(moment: datetime) -> str:
    """UTC text as stored: "2025-03-12T14:00:00Z" (sorts like the time it names)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def to_stamp(moment: datetime) -> str:
    """A record time like SQLite's strftime('%Y-%m-%dT%H:%M:%fZ','now'): millisecond UTC."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
