"""The opening-hours format, parsed in one place: "sun-thu 09:00-18:00; fri 09:00-13:00".

Used by config (transfer_hours is validated at load), the calendar (appointments hours) and
the transfer decision. Pure: no clock, no I/O; strict: a part that cannot be read is an error,
never "open".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")   # date.weekday() order
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ITEM = re.compile(r"([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s+(\d{1,2}):(\d\d)\s*-\s*(\d{1,2}):(\d\d)")


@dataclass(frozen=True)
class OpeningHours:
    """Per weekday (Monday first), the open intervals in minutes after local midnight."""

    days: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def parse(cls, spec: str) -> "OpeningHours":
        """"sun-thu 09:00-18:00; fri 09:00-13:00" (a day may appear twice: a lunch break).

        Raises ValueError naming the part that cannot be read. "24:00" closes at midnight.
        """
        days: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
        for raw in spec.replace(",", ";").split(";"):
            item = raw.strip().lower()
            if not item:
                continue
            match = _ITEM.fullmatch(item)
            if not match:
                raise ValueError(f"cannot read {raw.strip()!r}")
            first, last = match.group(1), match.group(2) or match.group(1)
            for name in (first, last):
                if name not in WEEKDAYS:
                    raise ValueError(f"{name!r} is not a day (mon, tue, ... sun)")
            start = int(match.group(3)) * 60 + int(match.group(4))
            end = int(match.group(5)) * 60 + int(match.group(6))
            if int(match.group(4)) > 59 or int(match.group(6)) > 59 or end > 24 * 60:
                raise ValueError(f"{raw.strip()!r} has an impossible time")
            if end <= start:
                raise ValueError(f"{raw.strip()!r} closes before it opens")
            a, b = WEEKDAYS.index(first), WEEKDAYS.index(last)
            for offset in range((b - a) % 7 + 1):
                days[(a + offset) % 7].append((start, end))
        out = []
        for intervals in days:
            intervals.sort()
            for (s1, e1), (s2, _) in zip(intervals, intervals[1:]):
                if s2 < e1:
                    raise ValueError(f"overlapping hours on one day: {_hm(s1)}-{_hm(e1)} "
                                     f"and {_hm(s2)}")
            out.append(tuple(intervals))
        return cls(tuple(out))

    def intervals(self, day: date) -> tuple[tuple[int, int], ...]:
        return self.days[day.weekday()]

    def describe(self) -> str:
        """"Sun-Thu 09:00-18:00; Fri 09:00-13:00" (consecutive equal days grouped)."""
        order = [6, 0, 1, 2, 3, 4, 5] if self.days[6] else list(range(7))
        groups: list[tuple[int, int, tuple[tuple[int, int], ...]]] = []
        for index in order:
            hours = self.days[index]
            if not hours:
                continue
            if groups and groups[-1][2] == hours and (groups[-1][1] + 1) % 7 == index:
                groups[-1] = (groups[-1][0], index, hours)
            else:
                groups.append((index, index, hours))
        parts = []
        for first, last, hours in groups:
            days = DAY_NAMES[first] if first == last else f"{DAY_NAMES[first]}-{DAY_NAMES[last]}"
            parts.append(days + " " + ", ".join(f"{_hm(s)}-{_hm(e)}" for s, e in hours))
        return "; ".join(parts) or "closed"


def _hm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def within_hours(spec: str, now: datetime) -> bool:
    """Is local `now` inside `spec`? An empty spec means always. Raises ValueError on a spec
    that cannot be read (config.py rejects those at load)."""
    if not spec.strip():
        return True
    minutes = now.hour * 60 + now.minute
    return any(start <= minutes < end
               for start, end in OpeningHours.parse(spec).intervals(now.date()))
