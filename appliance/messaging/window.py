"""WhatsApp's 24-hour customer-service window. Pure: decisions from timestamps.

A business may send free-form WhatsApp messages only within 24 hours of the customer's last
message; outside it only an approved template (a Content SID, HX...), else Twilio fails the
message with error 63016. SMS has no such rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

WINDOW = timedelta(hours=24)
# Send as a template a little before the window really closes: the message may sit in
# Twilio's queue for a moment, and our clock and Meta's are not the same clock.
SAFETY_MARGIN = timedelta(minutes=2)
ERROR_OUTSIDE_WINDOW = 63016

Mode = Literal["freeform", "template", "blocked"]


@dataclass(frozen=True)
class WindowDecision:
    mode: Mode
    reason: str   # why (for the log and the outbox row when blocked)


def window_open(last_inbound_at: datetime | None, now: datetime,
                margin: timedelta = SAFETY_MARGIN) -> bool:
    """True while a free-form WhatsApp message may still be sent."""
    if last_inbound_at is None:
        return False
    return now < last_inbound_at + WINDOW - margin


def decide(channel: str, last_inbound_at: datetime | None, now: datetime,
           template_sid: str, margin: timedelta = SAFETY_MARGIN) -> WindowDecision:
    """How a message to a customer may go out now."""
    if channel != "whatsapp":
        return WindowDecision("freeform", "sms has no 24-hour rule")
    if window_open(last_inbound_at, now, margin):
        return WindowDecision("freeform", "inside the 24-hour window")
    when = ("the customer never wrote on WhatsApp" if last_inbound_at is None
            else f"the customer last wrote at {last_inbound_at.isoformat()}")
    if template_sid:
        return WindowDecision("template", f"outside WhatsApp's 24-hour window ({when}); "
                                          f"sending template {template_sid}")
    return WindowDecision("blocked", f"outside WhatsApp's 24-hour window ({when}) and no "
                                     "[messaging] whatsapp_template_sid is configured, so "
                                     "WhatsApp allows no message")
