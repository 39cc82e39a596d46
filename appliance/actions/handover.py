"""Handing a call over to a person: one decision for the tool and for the DTMF operator key.

A transfer goes only to [twilio] operator_number, only if that number is listed in
[twilio] transfer_numbers (config.py always lists it), and only within [business]
transfer_hours (conversation.tools.within_hours reads that format). Outside those hours, or
when the operator does not answer (the `<Dial action>` posts DialCallStatus), the bot takes a
message instead. Nothing here takes a number from a model or a caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..conversation.tools import within_hours

if TYPE_CHECKING:
    from ..config import Settings
    from .services import ActionServices

# <Dial action> DialCallStatus values meaning a person took the call.
ANSWERED = frozenset({"completed", "answered"})


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


def operator_answered(dial_call_status: str) -> bool:
    """From the `<Dial action>` callback: False means take a message instead."""
    return dial_call_status.strip().lower() in ANSWERED


async def record_dial_result(services: "ActionServices", call_id: int | None,
                             customer_id: int | None, dial_call_status: str) -> bool:
    """For the `<Dial action>` handler: log the outcome for the owner's summary and say
    whether the operator answered (False: the bot takes a message now)."""
    from .appointments import log_action

    answered = operator_answered(dial_call_status)
    if not answered:
        await log_action(services.db, customer_id, call_id, "call", "transfer_unanswered",
                         dial_call_status or "no status", services.now(), needs_human=True)
    return answered
