"""The appointments as an iCalendar feed (RFC 5545), pure.

Times are UTC ("...Z"), so no VTIMEZONE is needed. Lines end in CRLF and are folded at 75
octets (never inside a UTF-8 character); TEXT values escape backslash, semicolon, comma and
newlines. The customer appears by name and the last digits of the number only: the feed is
meant for the owner's phone calendar, which may sync to other places.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from .appointments import Appointment

PRODID = "-//Appliance//Receptionist Calendar 1.0//EN"
CHANNEL_WORDS = {"call": "phone call", "gather": "phone call", "whatsapp": "WhatsApp",
                 "sms": "SMS", "chat": "chat", "": "the receptionist"}


def escape_text(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def fold(line: str) -> str:
    """Split a content line into 75-octet pieces joined by CRLF + space (RFC 5545 3.1)."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    pieces, start, limit = [], 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:   # not inside a character
            end -= 1
        pieces.append(data[start:end].decode("utf-8"))
        start, limit = end, 74                                 # continuation lines: 1 + 74
    return "\r\n ".join(pieces)


def utc_stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def masked_number(phone: str) -> str:
    """"+972501234567" -> "…4567" (enough to recognise, not to dial)."""
    digits = "".join(c for c in phone if c.isdigit())
    return "…" + digits[-4:] if len(digits) >= 4 else ""


def who(appointment: Appointment) -> str:
    tail = masked_number(appointment.customer_phone)
    name = appointment.customer_name or "Customer"
    return f"{name} ({tail})" if tail else name


def _parse_stamp(text: str, fallback: datetime) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return fallback


def render(appointments: Iterable[Appointment], *, calendar_name: str, now: datetime,
           title: str = "Appointment") -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN",
             "METHOD:PUBLISH", f"X-WR-CALNAME:{escape_text(calendar_name)}",
             "REFRESH-INTERVAL;VALUE=DURATION:PT15M", "X-PUBLISHED-TTL:PT15M"]
    for a in appointments:
        modified = _parse_stamp(a.updated_at, now)
        description = [f"Booked by {CHANNEL_WORDS.get(a.channel, a.channel)}",
                       f"appointment #{a.id}"]
        if a.note:
            description.insert(0, a.note)
        summary = f"{title}: {who(a)}" + (f" - {a.note}" if a.note else "")
        lines += ["BEGIN:VEVENT",
                  f"UID:{a.uid}",
                  f"DTSTAMP:{utc_stamp(now)}",
                  f"LAST-MODIFIED:{utc_stamp(modified)}",
                  f"CREATED:{utc_stamp(_parse_stamp(a.created_at, now))}",
                  f"DTSTART:{utc_stamp(a.start)}",
                  f"DTEND:{utc_stamp(a.end)}",
                  f"SUMMARY:{escape_text(summary[:200])}",
                  f"DESCRIPTION:{escape_text(chr(10).join(description))}",
                  "STATUS:" + ("CANCELLED" if a.status == "cancelled" else "CONFIRMED"),
                  "TRANSP:OPAQUE",
                  "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)
