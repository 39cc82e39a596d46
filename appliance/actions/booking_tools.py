"""The appointment tools: find_free_slots, book_appointment, move_appointment,
cancel_appointment, list_my_appointments (registered by tools.py when [appointments] is on).

Move and cancel find the appointment among the customer's own only; one call changes one
appointment; the confirmation goes to the customer's own number.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from typing import Any

from ..conversation.tools import Tool, ToolContext, ToolError
from .appointments import Appointment
from .calendar import (
    PARTS_OF_DAY,
    NotBookable,
    Slot,
    Window,
    describe_time,
    parse_local,
)
from .nlwindow import parse_window
from .notify import Delivery
from .customers import to_e164
from .services import ActionServices
from .stepup import require_identity

MAX_OFFERED = 6


# -- helpers ---------------------------------------------------------------------------------

def _hhmm(value: str, key: str) -> time:
    """"16:00", "9:30", "16", "4pm" -> a time of day; ToolError otherwise."""
    match = re.fullmatch(r"(\d{1,2})(?:[:.](\d\d))?(?::00)?\s*([ap]\.?m\.?)?",
                         value.strip().lower())
    if match:
        hour, minute = int(match.group(1)), int(match.group(2) or 0)
        suffix = (match.group(3) or "").replace(".", "")
        if suffix == "pm" and hour < 12:
            hour += 12
        elif suffix == "am" and hour == 12:
            hour = 0
        if hour < 24 and minute < 60:
            return time(hour, minute)
    raise ToolError(f"{key} must be a time like 16:00")


def _delivery_words(d: Delivery) -> str:
    if d.ok:
        return f"A confirmation was sent by {'WhatsApp' if d.channel == 'whatsapp' else 'SMS'}."
    if d.status == "rate_limited":
        return "No confirmation was sent (too many messages to this customer just now)."
    return "No written confirmation could be sent; tell the customer the details clearly."


def _slots_text(s: ActionServices, slots: list[Slot]) -> str:
    tz = s.rules.tz
    return "\n".join(f"- {slot.label(tz)} (start={slot.key(tz)})" for slot in slots)


def _appointment_line(s: ActionServices, a: Appointment) -> str:
    note = f" - {a.note}" if a.note else ""
    return f"- appointment_id={a.id}: {describe_time(a.start, s.rules.tz)}{note}"


async def _pick_own(s: ActionServices, ctx: ToolContext, args: dict[str, Any],
                    verb: str) -> int:
    """The appointment id to act on: the given one, or the only one the customer has."""
    require_identity(ctx, s.settings.security, verb)
    if args.get("appointment_id"):
        return int(args["appointment_id"])
    own = await s.appointments.upcoming_for(ctx.customer.id, s.now())
    if len(own) == 1:
        return own[0].id
    if not own:
        raise ToolError("this customer has no upcoming appointments")
    raise ToolError(f"this customer has {len(own)} appointments; ask which one to {verb} and "
                    "pass its appointment_id:\n" + "\n".join(_appointment_line(s, a)
                                                              for a in own))


async def _confirm(s: ActionServices, ctx: ToolContext, body: str, reason: str) -> str:
    if not s.config.appointments.confirm:
        return ""
    delivery = await s.outbound.to_customer(ctx.customer, ctx.channel, body, reason)
    return " " + _delivery_words(delivery)


def _where(s: ActionServices) -> str:
    address = s.settings.business.address
    return f" at {address}" if address else ""


# -- find_free_slots -------------------------------------------------------------------------

def find_tool(s: ActionServices) -> Tool:
    async def handler(ctx: ToolContext, args: dict[str, Any]) -> str:
        now = s.now()
        today = s.rules.today(now)
        window = _window(args, today)
        slots = await s.appointments.find(window, now, MAX_OFFERED)
        if slots:
            return (f"Free times ({s.settings.business.timezone}) for {window.describe()}:\n"
                    + _slots_text(s, slots) + "\nOffer two or three of them. Book only after "
                    "the customer chose one: book_appointment with its start value.")
        closed = [d for d in window.days() if not s.rules.is_open_day(d)]
        note = ""
        if window.first_day == window.last_day and closed:
            why = "a holiday" if window.first_day in s.rules.holidays else "a closed day"
            note = f"{window.describe()} is {why}. "
        later = Window(window.last_day + timedelta(days=1), window.last_day + timedelta(days=14),
                       window.earliest, window.latest)
        nearest = await s.appointments.find(later, now, 3)
        if not nearest:
            later = Window(window.last_day + timedelta(days=1),
                           window.last_day + timedelta(days=14))
            nearest = await s.appointments.find(later, now, 3)
        if not nearest:
            return note + (f"No free times for {window.describe()} nor in the two weeks after. "
                           f"Opening hours: {s.rules.hours.describe()}. Offer to take a message.")
        return (note + f"No free times for {window.describe()}. The nearest free times after "
                f"it:\n" + _slots_text(s, nearest))

    return Tool(
        name="find_free_slots",
        description=("Find free appointment times. Give a date (YYYY-MM-DD) and/or a part of "
                     "the day or earliest/latest times; or pass the customer's own words in "
                     "`when` (e.g. 'tomorrow morning', 'next Tuesday after 4'). Times are the "
                     "business's local time. Always tell the customer the date you found."),
        parameters={"type": "object", "properties": {
            "date": {"type": "string", "description": "Day to look at, YYYY-MM-DD."},
            "part_of_day": {"type": "string", "enum": list(PARTS_OF_DAY),
                            "description": "morning (before 12), afternoon (12-17), evening."},
            "earliest": {"type": "string", "description": "Not before this time, HH:MM."},
            "latest": {"type": "string", "description": "Starting before this time, HH:MM."},
            "days": {"type": "integer", "description": "How many days to search, 1-14."},
            "when": {"type": "string",
                     "description": "The customer's words about when, if no date is given."}}},
        handler=handler, timeout_s=6.0)


def _window(args: dict[str, Any], today: date) -> Window:
    days = max(1, min(14, int(args["days"]))) if args.get("days") else None
    if args.get("date"):
        try:
            first = date.fromisoformat(args["date"][:10])
        except ValueError:
            raise ToolError("date must look like 2025-03-12") from None
        if first < today:
            raise ToolError(f"{first} is in the past; today is {today}")
        window = Window(first, first + timedelta(days=(days or 1) - 1))
    else:
        parsed = parse_window(args["when"], today) if args.get("when") else None
        window = parsed or Window(today, today + timedelta(days=6))
        if days:
            window = Window(window.first_day, window.first_day + timedelta(days=days - 1),
                            window.earliest, window.latest)
    earliest, latest = window.earliest, window.latest
    part = args.get("part_of_day")
    if part and part != "any":
        earliest, latest = PARTS_OF_DAY[part]
    if args.get("earliest"):
        earliest = _hhmm(args["earliest"], "earliest")
    if args.get("latest"):
        latest = _hhmm(args["latest"], "latest")
    first = max(window.first_day, today)
    return Window(first, max(first, window.last_day), earliest, latest)


# -- book / move / cancel / list -------------------------------------------------------------

def book_tool(s: ActionServices) -> Tool:
    async def handler(ctx: ToolContext, args: dict[str, Any]) -> str:
        try:
            wall = parse_local(args["start"])
        except ValueError as exc:
            raise ToolError(f"start must be a local time like 2025-03-12T16:00 ({exc})") from None
        now = s.now()
        note = args.get("note", "")
        if ctx.customer.anonymous:          # withheld number: keep the one they give us
            callback = to_e164(args.get("callback_number", ""),
                               s.settings.security.allowed_prefixes[0][1:]
                               if s.settings.security.allowed_prefixes else "")
            if callback is None:
                raise ToolError("the caller's number is withheld: ask for a phone number to "
                                "reach them at and pass it as callback_number (with country "
                                "code)")
            note = f"{note} (callback {callback}, number withheld)".strip()
        try:
            booked = await s.appointments.book(ctx.customer.id, wall, now,
                                               note=note, channel=ctx.channel,
                                               call_id=ctx.call_id)
        except NotBookable as exc:
            raise ToolError(f"not booked: {exc}") from None
        label = describe_time(booked.start, s.rules.tz)
        if s.google is not None:
            s.google.schedule(booked.id)
        sent = await _confirm(
            s, ctx, f"{s.settings.business.name}: your appointment is booked for {label}"
            f"{_where(s)}. To change or cancel it, call or message us.", "booking_confirmation")
        return (f"Booked: appointment_id={booked.id}, {label}.{sent} Tell the customer the day "
                "and time.")

    return Tool(
        name="book_appointment",
        description=("Book an appointment for the customer you are talking to, at a start time "
                     "returned by find_free_slots, once the customer has agreed to it. A "
                     "confirmation goes to the customer's own number."),
        parameters={"type": "object", "required": ["start"], "properties": {
            "start": {"type": "string", "description": "Local start, YYYY-MM-DDTHH:MM."},
            "note": {"type": "string", "description": "What it is for, in a few words."},
            "callback_number": {"type": "string", "description": (
                "Only when the caller's number is withheld: the number they give to be "
                "reached at.")}}},
        handler=handler, slow=False, timeout_s=8.0)


def move_tool(s: ActionServices) -> Tool:
    async def handler(ctx: ToolContext, args: dict[str, Any]) -> str:
        appointment_id = await _pick_own(s, ctx, args, "move")
        try:
            wall = parse_local(args["new_start"])
        except ValueError as exc:
            raise ToolError(f"new_start must look like 2025-03-12T16:00 ({exc})") from None
        try:
            before, after = await s.appointments.move(ctx.customer.id, appointment_id, wall,
                                                      s.now(), channel=ctx.channel,
                                                      call_id=ctx.call_id)
        except NotBookable as exc:
            raise ToolError(f"not moved: {exc}") from None
        tz = s.rules.tz
        old, new = describe_time(before.start, tz), describe_time(after.start, tz)
        if s.google is not None:
            s.google.schedule(after.id)
        sent = await _confirm(s, ctx, f"{s.settings.business.name}: your appointment of {old} "
                              f"is moved to {new}{_where(s)}.", "booking_confirmation")
        return f"Moved appointment_id={after.id} from {old} to {new}.{sent}"

    return Tool(
        name="move_appointment",
        description=("Move one of the customer's own upcoming appointments to a new start time "
                     "from find_free_slots. Without appointment_id, moves their only one."),
        parameters={"type": "object", "required": ["new_start"], "properties": {
            "appointment_id": {"type": "integer",
                               "description": "From list_my_appointments."},
            "new_start": {"type": "string", "description": "Local start, YYYY-MM-DDTHH:MM."}}},
        handler=handler, timeout_s=8.0)


def cancel_tool(s: ActionServices) -> Tool:
    async def handler(ctx: ToolContext, args: dict[str, Any]) -> str:
        appointment_id = await _pick_own(s, ctx, args, "cancel")
        try:
            cancelled = await s.appointments.cancel(ctx.customer.id, appointment_id, s.now(),
                                                    channel=ctx.channel, call_id=ctx.call_id)
        except NotBookable as exc:
            raise ToolError(f"not cancelled: {exc}") from None
        label = describe_time(cancelled.start, s.rules.tz)
        if s.google is not None:
            s.google.schedule(cancelled.id)
        sent = await _confirm(s, ctx, f"{s.settings.business.name}: your appointment of {label} "
                              "is cancelled.", "booking_confirmation")
        return f"Cancelled appointment_id={cancelled.id} ({label}).{sent}"

    return Tool(
        name="cancel_appointment",
        description=("Cancel ONE of the customer's own upcoming appointments, after they "
                     "confirmed which. Without appointment_id, cancels their only one."),
        parameters={"type": "object", "properties": {
            "appointment_id": {"type": "integer",
                               "description": "From list_my_appointments."}}},
        handler=handler, timeout_s=6.0)


def list_tool(s: ActionServices) -> Tool:
    async def handler(ctx: ToolContext, args: dict[str, Any]) -> str:
        require_identity(ctx, s.settings.security, "list")
        own = await s.appointments.upcoming_for(ctx.customer.id, s.now())
        if not own:
            return "This customer has no upcoming appointments."
        return "The customer's upcoming appointments:\n" + "\n".join(
            _appointment_line(s, a) for a in own)

    return Tool(
        name="list_my_appointments",
        description="The upcoming appointments of the customer you are talking to.",
        parameters={"type": "object", "properties": {}}, handler=handler, timeout_s=5.0)
