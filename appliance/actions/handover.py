"""Handing a call over to a person: one decision for the tool and for the DTMF operator key.

A transfer goes only to [twilio] operator_number, only if that number is listed in
[twilio] transfer_numbers (config.py always lists it), and only within [business]
transfer_hours (appliance/hours.py reads that format). The decision itself is
appliance/transfer.py, shared by the one transfer_to_human tool and the DTMF operator key. Outside those hours, or
when the operator does not answer (the `<Dial action>` posts DialCallStatus), the bot takes a
message instead. Nothing here takes a number from a model or a caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..transfer import TransferDecision, decide_transfer

if TYPE_CHECKING:
    from .services import ActionServices

__all__ = ["ANSWERED", "TransferDecision", "decide_transfer", "operator_answered",
           "record_dial_result"]

# <Dial action> DialCallStatus values meaning a person took the call.
ANSWERED = frozenset({"completed", "answered"})


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
