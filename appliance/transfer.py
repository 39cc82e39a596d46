"""May this call be put through to a person now, and to whom? One decision for the
transfer_to_human tool (conversation/tools.py) and the DTMF operator key (call/session.py).

A transfer goes only to [twilio] operator_number, only if that number is listed in
[twilio] transfer_numbers, and only within [business] transfer_hours (appliance/hours.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from .config import Settings
from .hours import within_hours


@dataclass(frozen=True)
class TransferDecision:
    allowed: bool
    target: str        # E.164 from config.ini when allowed, else ""
    reason: str        # ok, no_operator, not_listed, outside_hours
    message: str       # what the model (or the call path) should do now


def decide_transfer(settings: "Settings", now: datetime) -> TransferDecision:
    """May this call be transferred now, and to whom? `now` is aware (any zone)."""
    target = settings.twilio.operator_number
    if not target:
        return TransferDecision(False, "", "no_operator",
                                "No person can take calls here. Offer to take a message: ask "
                                "for the caller's name and what it is about, then use "
                                "take_message.")
    if target not in settings.twilio.transfer_numbers:
        return TransferDecision(False, "", "not_listed",
                                "Transfers are not possible right now. Offer to take a message "
                                "with take_message.")
    business = settings.business
    local = now.astimezone(ZoneInfo(business.timezone))
    if not within_hours(business.transfer_hours, local):
        return TransferDecision(False, "", "outside_hours",
                                f"Nobody can take the call now (people answer "
                                f"{business.transfer_hours}; it is {local:%a %H:%M}). Say so and "
                                "offer to take a message: ask what it is about, then use "
                                "take_message.")
    return TransferDecision(True, target, "ok",
                            "The call will be transferred to a person right after your next "
                            "sentence. Tell the caller in one short sentence that you are "
                            "connecting them.")
