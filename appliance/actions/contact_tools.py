"""The tools that reach people: take_message (to the owner), send_me_info (to the customer's
own number) and transfer_to_human (to a configured number only; calls only)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

from ..conversation.effects import write_once
from ..conversation.names import InvalidName, clean_name
from ..conversation.tools import VOICE_CHANNELS, Tool, ToolContext, ToolError, transfer_tool
from ..transfer import TransferDecision
from .appointments import log_action, log_in
from .services import ActionServices


# -- messages and information ----------------------------------------------------------------

def message_tool(s: ActionServices) -> Tool:
    async def handler(ctx: ToolContext, args: dict[str, Any]) -> str:
        text = args["message"][:1000]
        try:
            name = clean_name(str(args.get("name", "")))
        except InvalidName as exc:
            raise ToolError(str(exc)) from None
        urgent = bool(args.get("urgent"))
        now = s.now()
        if name and not ctx.customer.name:
            ctx.customer = await ctx.memory.update_customer(ctx.customer.id, name=name)

        def tx(conn: sqlite3.Connection) -> int:      # the message and its log line, once
            message_id = conn.execute(
                "INSERT INTO taken_messages(customer_id, call_id, channel, name, text, urgent) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (ctx.customer.id, ctx.call_id, ctx.channel, name, text, int(urgent))).lastrowid
            log_in(conn, ctx.customer.id, ctx.call_id, ctx.channel, "message",
                   f"#{message_id}" + (" urgent" if urgent else ""), now, needs_human=True)
            return int(message_id)

        await write_once(s.db, "message", tx)
        who = name or ctx.customer.name or "a customer"
        number = "number withheld" if ctx.customer.anonymous else ctx.customer.phone
        body = (f"{'URGENT ' if urgent else ''}Message from {who} ({number}) by "
                f"{_channel_words(ctx.channel)}:\n{text}")
        deliveries = await s.outbound.to_owner(
            f"Message from {who}", body, "owner_notice", customer_id=ctx.customer.id,
            counted=True)
        told = any(d.ok for d in deliveries)
        return ("Message saved" + (" and the owner has been notified." if told else
                                   "; the owner will see it in the summary.")
                + " Tell the customer someone will get back to them.")

    return Tool(
        name="take_message",
        description=("Leave a message for the business's people: what the customer wants, in "
                     "their words, and their name. The owner is notified."),
        parameters={"type": "object", "required": ["message"], "properties": {
            "message": {"type": "string", "description": "The request, complete."},
            "name": {"type": "string", "description": "The customer's name, if given."},
            "urgent": {"type": "boolean", "description": "The customer says it is urgent."}}},
        handler=handler, timeout_s=6.0)


def _channel_words(channel: str) -> str:
    return {"call": "phone", "gather": "phone", "whatsapp": "WhatsApp", "sms": "SMS"}.get(
        channel, channel)


def info_tool(s: ActionServices) -> Tool:
    async def handler(ctx: ToolContext, args: dict[str, Any]) -> str:
        kind = args["kind"]
        business = s.settings.business
        if kind == "address":
            if not business.address:
                return "The business has not set its address; say you cannot send it."
            content = (f"{business.address}\nhttps://www.google.com/maps/search/?api=1&query="
                       f"{quote_plus(business.address)}")
        elif kind == "website":
            if not business.website:
                return "The business has no website set; say you cannot send it."
            content = business.website
        else:
            content = f"Opening hours: {s.rules.hours.describe()}"
        if ctx.channel not in VOICE_CHANNELS:
            return f"Put this in your reply:\n{content}"
        delivery = await s.outbound.to_customer(
            ctx.customer, ctx.channel, f"{business.name} - {kind}:\n{content}", "info")
        await log_action(s.db, ctx.customer.id, ctx.call_id, ctx.channel, "info_sent",
                         f"{kind}: {delivery.status}", s.now())
        if delivery.ok:
            how = "WhatsApp" if delivery.channel == "whatsapp" else "SMS"
            return f"Sent the {kind} by {how} to the caller's own number."
        if delivery.status == "rate_limited":
            return (f"Not sent: this caller has been sent too many messages just now. Tell them "
                    f"the {kind} instead: {content.splitlines()[0]}")
        return f"Could not send it. Tell the caller instead: {content.splitlines()[0]}"

    return Tool(
        name="send_me_info",
        description=("Send the business's address, website or opening hours to the customer's "
                     "own number by WhatsApp or SMS (it cannot go to any other number)."),
        parameters={"type": "object", "required": ["kind"], "properties": {
            "kind": {"type": "string", "enum": ["address", "website", "hours"]}}},
        handler=handler, timeout_s=6.0)


# -- transfer --------------------------------------------------------------------------------

def transfer_to_human_tool(s: ActionServices) -> Tool:
    """The one transfer tool, with the hand-over kept in the actions log."""
    async def record(ctx: ToolContext, decision: TransferDecision, reason: str,
                     now: datetime) -> None:
        if decision.allowed:
            await log_action(s.db, ctx.customer.id, ctx.call_id, ctx.channel, "transfer",
                             reason, now)
        else:
            await log_action(s.db, ctx.customer.id, ctx.call_id, ctx.channel,
                             "transfer_refused", f"{decision.reason}: {reason}".strip(": "),
                             now, needs_human=decision.reason == "outside_hours")

    return transfer_tool(record, now=s.now)
