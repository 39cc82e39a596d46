"""A small parser for when the customer wants to come: "tomorrow morning", "next Tuesday after 4".

Pure and clock-free (`today` is passed in). The tools take structured arguments first (an ISO
date, a part of the day, an earliest time); this is the fallback for the customer's own words,
which the model may pass along. English, with Hebrew and Russian day words and parts of day.

Rules, stated so the tool's answer can be checked by the customer (it always names the date):
- a weekday alone, or "this <weekday>", is its next occurrence from today on (today included);
  "next <weekday>" is its next occurrence after today;
- "after 4" / "before 11" / "at 3": hours 1-7 without am/pm mean the afternoon (16:00),
  unless "morning" was said; "at 3" means a slot starting from 15:00 and before 16:00;
- no day at all: the next `default_days` days from today.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta

from .calendar import PARTS_OF_DAY, Window

_EN_DAYS = {"monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2,
            "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4,
            "saturday": 5, "sat": 5, "sunday": 6, "sun": 6}
_HE_DAYS = {"ראשון": 6, "שני": 0, "שלישי": 1, "רביעי": 2, "חמישי": 3, "שישי": 4}
_RU_DAYS = (("понедельник", 0), ("вторник", 1), ("сред", 2), ("четверг", 3), ("пятниц", 4),
            ("суббот", 5), ("воскресень", 6))
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"))}
_MONTHS.update({m[:3]: n for m, n in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "noon": 12}

_HOUR = r"(\d{1,2}(?::\d\d)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|noon)"
_AMPM = r"(?:\s*(a\.?m\.?|p\.?m\.?|o'?clock))?"
_AFTER = re.compile(r"(?<!\w)(?:after|from|since|later than|אחרי|החל מ|מ-|после|с|позже)\s*" + _HOUR
                    + _AMPM, re.UNICODE)
_BEFORE = re.compile(r"(?<!\w)(?:before|until|till|by|earlier than|לפני|עד|до|раньше)\s*" + _HOUR
                     + _AMPM, re.UNICODE)
_AT = re.compile(r"(?<!\w)(?:at|around|about|בשעה|ב-|в|около)\s*" + _HOUR + _AMPM, re.UNICODE)

_PARTS = (  # (pattern, part) - checked in order
    (r"afternoon|after lunch|אחר הצהריים|אחה\"?צ|צהריים|после обеда|днём|днем", "afternoon"),
    (r"morning|בבוקר|בוקר|утр", "morning"),
    (r"evening|tonight|בערב|הערב|ערב|вечер", "evening"),
)


def parse_window(text: str, today: date, *, default_days: int = 7) -> Window | None:
    """The window the customer means, or None when nothing in `text` is about time."""
    t = " " + re.sub(r"\s+", " ", text.lower().replace("’", "'")).strip() + " "
    days = _days(t, today)
    part = next((p for pattern, p in _PARTS if re.search(pattern, t)), None)
    earliest, latest = PARTS_OF_DAY[part] if part else (None, None)
    morning = part == "morning"
    found_time = False
    for match in _AT.finditer(t):
        at = _clock(match.group(1), match.group(2), morning)
        if at is not None:
            earliest, latest = at, _plus_hour(at)
            found_time = True
            break
    for match in _AFTER.finditer(t):
        at = _clock(match.group(1), match.group(2), morning)
        if at is not None:
            earliest = at if earliest is None else max(earliest, at)
            found_time = True
            break
    for match in _BEFORE.finditer(t):
        at = _clock(match.group(1), match.group(2), morning)
        if at is not None:
            latest = at if latest is None else min(latest, at)
            found_time = True
            break
    if days is None and part is None and not found_time:
        return None
    first, last = days or (today, today + timedelta(days=default_days - 1))
    return Window(first, last, earliest, latest)


def _days(t: str, today: date) -> tuple[date, date] | None:
    iso = re.search(r"(\d{4})-(\d{2})-(\d{2})", t)
    if iso:
        try:
            day = date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
            return day, day
        except ValueError:
            pass
    if re.search(r"day after tomorrow|מחרתיים|послезавтра", t):
        return _one(today + timedelta(days=2))
    if re.search(r"\btomorrow\b|מחר|завтра", t):
        return _one(today + timedelta(days=1))
    if re.search(r"\btoday\b|\btonight\b|\bthis (morning|afternoon|evening)\b|היום|הערב|"
                 r"сегодня", t):
        return _one(today)
    if re.search(r"next week|שבוע הבא|следующей неделе|следующую неделю", t):
        monday = today + timedelta(days=7 - today.weekday())
        return monday, monday + timedelta(days=6)
    if re.search(r"this week|השבוע|этой неделе", t):
        return today, today + timedelta(days=6 - today.weekday())
    if re.search(r"weekend|סוף השבוע|סופ\"ש|выходные", t):
        saturday = today + timedelta(days=(5 - today.weekday()) % 7)
        return saturday, saturday + timedelta(days=1)
    weekday, after_today = _weekday(t)
    if weekday is not None:
        ahead = (weekday - today.weekday()) % 7
        if ahead == 0 and after_today:
            ahead = 7
        return _one(today + timedelta(days=ahead))
    return _month_day(t, today)


def _weekday(t: str) -> tuple[int | None, bool]:
    nxt = bool(re.search(r"\bnext\b|הבא|следующ", t))
    for word, number in _EN_DAYS.items():
        if re.search(rf"\b{word}\b", t):
            return number, nxt
    for word, number in _HE_DAYS.items():
        if re.search(rf"יום\s+{word}|ביום\s+{word}", t):
            return number, nxt
    if re.search(r"(^|\s)[בה]?שבת", t):
        return 5, nxt
    for stem, number in _RU_DAYS:
        if stem in t:
            return number, nxt
    return None, False


def _month_day(t: str, today: date) -> tuple[date, date] | None:
    names = "|".join(sorted(_MONTHS, key=len, reverse=True))
    match = (re.search(rf"\b({names})\.? (\d{{1,2}})(?:st|nd|rd|th)?\b", t)
             or re.search(rf"\b(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?({names})\b", t))
    if not match:
        return None
    a, b = match.group(1), match.group(2)
    month, day = (_MONTHS[a], int(b)) if a in _MONTHS else (_MONTHS[b], int(a))
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            return None
        if candidate >= today:
            return _one(candidate)
    return None


def _one(day: date) -> tuple[date, date]:
    return day, day


def _clock(hour_text: str, suffix: str | None, morning: bool) -> time | None:
    if hour_text in _NUMBER_WORDS:
        hour, minute = _NUMBER_WORDS[hour_text], 0
    else:
        hour_s, _, minute_s = hour_text.partition(":")
        hour, minute = int(hour_s), int(minute_s or 0)
    suffix = (suffix or "").replace(".", "")
    if hour > 23 or minute > 59:
        return None
    if suffix == "pm" and hour < 12:
        hour += 12
    elif suffix == "am" and hour == 12:
        hour = 0
    elif suffix != "am" and 1 <= hour <= 7 and not morning:
        hour += 12          # "after 4" at a business means 16:00
    return time(hour, minute)


def _plus_hour(at: time) -> time | None:
    return None if at.hour >= 23 else time(at.hour + 1, at.minute)
