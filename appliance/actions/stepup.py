"""Step-up for voice calls: caller ID alone is spoofable, so before a call may move, cancel or
read out a customer's appointments, the caller reads back a one-time code sent to that number's
WhatsApp/SMS (through the outbox, like every other message).

The code is stored hashed (sha256 of a random salt and the code) with an expiry and an attempt
limit ([security] code_minutes, code_attempts); a new code voids the open ones. With
[security] trust_attested_callers, a caller whose number the carrier attested (STIR/SHAKEN
"TN-Validation-Passed-A", recorded on the call) needs no code; by default every voice caller
does. Messaging channels are not stepped up: the sender is the channel's own account.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..conversation.privacy import confirmed
from ..conversation.tools import VOICE_CHANNELS, Tool, ToolContext, ToolError
from ..store.db import Database
from .calendar import to_iso
from .security import SecuritySettings

if TYPE_CHECKING:
    from .services import ActionServices

CODE_DIGITS = 6


def _hash(salt: str, code: str) -> str:
    return hashlib.sha256((salt + code).encode()).hexdigest()


def trusted(ctx: ToolContext, security: SecuritySettings) -> bool:
    """May this conversation act on the customer's records without a code?"""
    return confirmed(ctx, security.trust_attested_callers)


def require_identity(ctx: ToolContext, security: SecuritySettings, verb: str) -> None:
    """Raise the ToolError the model needs when `ctx` may not `verb` the customer's records."""
    if ctx.customer.anonymous:
        raise ToolError("the caller's number is withheld, so no appointments can be looked up, "
                        "moved or cancelled on this call; they can call again from their own "
                        "number or write to us on WhatsApp")
    if not trusted(ctx, security):
        raise ToolError(f"the caller's identity is not confirmed yet. Before you {verb}: call "
                        "send_verification_code, ask the caller to read out the code they "
                        "received by message, then call check_verification_code with it")


async def issue(db: Database, ctx: ToolContext, now: datetime,
                security: SecuritySettings) -> str:
    """A new code for this customer (the open ones are void); returns the code to send."""
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    salt = secrets.token_hex(16)
    expires = to_iso(now + timedelta(minutes=security.code_minutes))

    def tx(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE verification_codes SET state = 'void' WHERE customer_id = ? AND "
                     "state = 'open'", (ctx.customer.id,))
        conn.execute("INSERT INTO verification_codes(customer_id, call_id, salt, code_hash, "
                     "expires_at) VALUES (?, ?, ?, ?, ?)",
                     (ctx.customer.id, ctx.call_id, salt, _hash(salt, code), expires))

    await db.write(tx)
    return code


async def check(db: Database, ctx: ToolContext, code: str, now: datetime,
                security: SecuritySettings) -> str:
    """"verified", "wrong" (attempts left), "expired", "locked" or "none" (no open code)."""
    given = "".join(ch for ch in code if ch.isdigit())
    stamp = to_iso(now)

    def tx(conn: sqlite3.Connection) -> str:
        row = conn.execute("SELECT id, salt, code_hash, expires_at, attempts FROM "
                           "verification_codes WHERE customer_id = ? AND state = 'open' "
                           "ORDER BY id DESC LIMIT 1", (ctx.customer.id,)).fetchone()
        if row is None:
            return "none"
        if row["expires_at"] <= stamp:
            conn.execute("UPDATE verification_codes SET state = 'void' WHERE id = ?", (row[0],))
            return "expired"
        if hmac.compare_digest(_hash(row["salt"], given), row["code_hash"]):
            conn.execute("UPDATE verification_codes SET state = 'verified' WHERE id = ?",
                         (row[0],))
            return "verified"
        attempts = row["attempts"] + 1
        state = "void" if attempts >= security.code_attempts else "open"
        conn.execute("UPDATE verification_codes SET attempts = ?, state = ? WHERE id = ?",
                     (attempts, state, row[0]))
        return "locked" if state == "void" else "wrong"

    result = await db.write(tx)
    if result == "verified":
        ctx.verified = True
    return result


# -- the two tools ---------------------------------------------------------------------------

def stepup_tools(s: ActionServices) -> list[Tool]:
    """send_verification_code and check_verification_code (calls only)."""
    security = s.settings.security

    async def send(ctx: ToolContext, args: dict[str, Any]) -> str:
        if ctx.customer.anonymous:
            raise ToolError("the caller's number is withheld: there is nowhere to send a code")
        if trusted(ctx, security):
            return "The caller is already confirmed; no code is needed."
        code = await issue(s.db, ctx, s.now(), security)
        body = (f"{s.settings.business.name}: your code is {code}. It is valid for "
                f"{security.code_minutes} minutes. Only read it out on a call you made to us.")
        delivery = await s.outbound.to_customer(ctx.customer, ctx.channel, body,
                                                "verification_code")
        if not delivery.ok:
            raise ToolError(f"no code could be sent ({delivery.status}); the appointment cannot "
                            "be changed on this call: offer to take a message instead")
        return (f"A {CODE_DIGITS}-digit code was sent by {delivery.channel} to the caller's own "
                "number. Ask them to read it out, then call check_verification_code.")

    async def verify(ctx: ToolContext, args: dict[str, Any]) -> str:
        result = await check(s.db, ctx, str(args.get("code", "")), s.now(), security)
        return {"verified": "Confirmed: the caller may now manage their appointments.",
                "wrong": "That code is wrong; ask the caller to read it out again.",
                "expired": "That code has expired; send a new one if the caller wants.",
                "locked": "Too many wrong codes: the code is void. Do not change anything on "
                          "this call; offer to take a message.",
                "none": "No code was sent yet: call send_verification_code first."}[result]

    return [
        Tool(name="send_verification_code",
             description=("Send a one-time code to the caller's own number by message. Needed "
                          "before their appointments can be listed, moved or cancelled on a "
                          "call."),
             parameters={"type": "object", "properties": {}}, handler=send,
             channels=VOICE_CHANNELS, timeout_s=6.0),
        Tool(name="check_verification_code",
             description="Check the code the caller read out (digits only).",
             parameters={"type": "object", "required": ["code"], "properties": {
                 "code": {"type": "string", "description": "The digits the caller said."}}},
             handler=verify, channels=VOICE_CHANNELS, timeout_s=4.0),
    ]
