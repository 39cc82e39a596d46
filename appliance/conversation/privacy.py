"""What a voice caller whose identity is not confirmed may be told (issue 13, item 3).

Caller ID is spoofable, so on a phone call the number alone does not open the customer's
record. The product decision:

* an unconfirmed voice caller (caller ID only: not stepped up with a code, and not an
  A-attested STIR/SHAKEN caller while [security] trust_attested_callers is on) is greeted as
  a returning customer by first name, and nothing more: the model's prompt carries no earlier
  conversation (of any channel), no appointments, no surname or other personal details;
* once the caller reads back the one-time code (actions/stepup.py), the full context (the
  earlier conversations, the whole name) is loaded for the rest of the call, from the next
  model request on.

Messaging channels are not held back: the sender is the channel's own account.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..llm.base import ChatMessage
from .tools import ToolContext

ATTESTED = "TN-Validation-Passed-A"   # STIR/SHAKEN full attestation (Twilio's StirVerstat)


def confirmed(ctx: ToolContext, trust_attested: bool) -> bool:
    """May this conversation use the customer's records (history, appointments, details)?"""
    if not ctx.voice or ctx.verified:
        return True
    return trust_attested and ctx.attestation == ATTESTED


def first_name(name: str | None) -> str | None:
    parts = (name or "").split()
    return parts[0] if parts else None


@dataclass
class Withheld:
    """The earlier conversation kept out of an unconfirmed caller's prompt, until step-up."""

    history: list[ChatMessage]
    returning: bool                 # the customer has written or called before


def unconfirmed_about(name: str | None, returning: bool) -> str:
    """The prompt's line about an unconfirmed caller."""
    who = [f"first name {first_name(name)}"] if first_name(name) else []
    if returning:
        who.append("a returning customer")
    head = ("The caller: " + "; ".join(who) + ". ") if who else ""
    return (head + "Their identity is not confirmed on this call: do not mention earlier "
            "conversations, appointments or personal details; if they ask for them, confirm "
            "who they are first (send_verification_code, then check_verification_code).")
