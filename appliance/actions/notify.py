"""The one door out of the box for messages a conversation causes.

`Outbound` is where every confirmation, notice and summary passes, and where the rules are
enforced once:
- a customer gets messages only at their own number, taken from the conversation (the
  `Customer` the engine looked up), never from a model's arguments; an opted-out (STOP) or
  anonymous caller gets nothing;
- the owner gets messages only at [owner] email / whatsapp from config.ini, and at most
  [security] owner_notices_per_hour per channel, all customers together (the last one says
  so; the rest are 'held': the messages and summaries are stored, nothing is lost);
- what one customer can cause to be sent is rate-limited (by default 3 per 10 minutes, counted
  in `notify_log` inside one write transaction, so parallel tool calls cannot slip past); the
  owner's summaries are not counted (the conversation did not ask for them).

WhatsApp and SMS go through a `Notifier` (the messaging outbox, connected by the lead); e-mail
through `mailer.EmailOutbox` (durable, retried).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Literal, Protocol

from ..conversation.effects import current_effect
from ..logs import mask_phone
from ..store.db import Database
from .calendar import to_stamp
from .settings import NotifySettings

if TYPE_CHECKING:
    from ..config import Settings
    from ..conversation.memory import Customer
    from .mailer import EmailOutbox

log = logging.getLogger(__name__)

Channel = Literal["whatsapp", "sms"]
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class Notifier(Protocol):
    """WhatsApp/SMS sending, implemented by the messaging outbox (appliance/messaging).

    `to` is an E.164 number without any "whatsapp:" prefix; `reason` is a short tag for logs
    and the outbox ("booking_confirmation", "info", "owner_notice", "summary").
    Returning means the message was accepted: sent, or stored and retried by the outbox.
    `dedupe_key`: queue it once per key (a tool re-run for a re-answered message).
    Raising means it was not; the caller records the failure.
    """

    async def send_text(self, channel: Channel, to: str, body: str, reason: str,
                        dedupe_key: str | None = None) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """What became of one message.

    status: sent (handed to the notifier), queued (in the e-mail outbox), rate_limited,
    opted_out, no_number (anonymous or not E.164), not_allowed (outside [security]
    allowed_prefixes), no_channel (nothing configured),
    failed (the notifier raised), not_configured.
    """

    status: str
    channel: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("sent", "queued")


def choose_channel(conversation_channel: str, has_written_on_whatsapp: bool,
                   whatsapp_ready: bool, sms_ready: bool) -> Channel | None:
    """Where a customer's confirmation goes: the messaging channel they are on; else WhatsApp
    if they have written on WhatsApp before; else SMS; else whatever is configured."""
    wanted: list[Channel]
    if conversation_channel == "whatsapp":
        wanted = ["whatsapp", "sms"]
    elif conversation_channel == "sms":
        wanted = ["sms", "whatsapp"]
    elif has_written_on_whatsapp:
        wanted = ["whatsapp", "sms"]
    else:
        wanted = ["sms", "whatsapp"]
    ready = {"whatsapp": whatsapp_ready, "sms": sms_ready}
    return next((c for c in wanted if ready[c]), None)


class Outbound:
    """Messages to the customer of a conversation and to the owner; see the module doc."""

    def __init__(self, db: Database, settings: "Settings", limits: NotifySettings,
                 notifier: Notifier | None, email: "EmailOutbox | None",
                 clock: Callable[[], datetime]) -> None:
        self.db = db
        self.settings = settings
        self.limits = limits
        self.notifier = notifier
        self.email = email
        self.clock = clock

    # -- to the customer -------------------------------------------------------------------

    async def to_customer(self, customer: "Customer", conversation_channel: str, body: str,
                          reason: str) -> Delivery:
        """Send `body` to this customer's own number (the conversation's, never another)."""
        number = customer.phone
        if customer.opted_out:
            await self._record(customer.id, "", "customer", reason, "opted_out", counted=False)
            return Delivery("opted_out")
        if not E164.match(number):
            return Delivery("no_number")
        if not self.settings.security.may_message(number):
            log.warning("%s to %s not sent: outside [security] allowed_prefixes", reason,
                        mask_phone(number))
            return Delivery("not_allowed")
        if self.notifier is None:
            log.warning("no WhatsApp/SMS sender connected; %s not sent", reason)
            return Delivery("not_configured")
        channel = choose_channel(conversation_channel, await self._wrote_on_whatsapp(customer.id),
                                 bool(self.settings.messaging.whatsapp_from),
                                 bool(self.settings.messaging.sms_from))
        if channel is None:
            return Delivery("no_channel")
        row = await self._admit(customer.id, channel, "customer", reason)
        if row is None:
            log.warning("%s to %s not sent: rate limit of %d per %d min reached", reason,
                        mask_phone(number), self.limits.rate_limit,
                        self.limits.rate_window_minutes)
            return Delivery("rate_limited", channel)
        return await self._send(row, channel, number, body, reason, "customer")

    async def _wrote_on_whatsapp(self, customer_id: int) -> bool:
        row = await self.db.fetchone(
            "SELECT 1 FROM turns WHERE customer_id = ? AND channel = 'whatsapp' AND "
            "role = 'user' LIMIT 1", (customer_id,))
        return row is not None

    # -- to the owner ----------------------------------------------------------------------

    async def to_owner(self, subject: str, body: str, reason: str, *,
                       customer_id: int | None = None, counted: bool = True,
                       dedupe_key: str | None = None, email: bool = True,
                       whatsapp: bool = True) -> list[Delivery]:
        """To [owner] email (through the e-mail outbox) and/or [owner] whatsapp.

        `counted`: the customer caused it (a message taken), so it counts against their limit;
        the summaries are not counted. `dedupe_key` queues one e-mail per key at most.
        """
        owner = self.settings.owner
        out: list[Delivery] = []
        if email and owner.email:
            if self.email is None:
                out.append(Delivery("not_configured", "email"))
            else:
                row, last = await self._admit_owner(customer_id, "email", reason, counted)
                if row is None:
                    out.append(Delivery("held" if last else "rate_limited", "email"))
                else:
                    await self.email.enqueue(owner.email, subject, body + last, reason,
                                             dedupe_key or _effect_key(reason, "email"))
                    await self._status(row, "queued")
                    out.append(Delivery("queued", "email"))
        if whatsapp and owner.whatsapp:
            if self.notifier is None:
                out.append(Delivery("not_configured", "whatsapp"))
            else:
                row, last = await self._admit_owner(customer_id, "whatsapp", reason, counted)
                if row is None:
                    out.append(Delivery("held" if last else "rate_limited", "whatsapp"))
                else:
                    text = (f"{subject}\n\n{body}" if subject else body) + last
                    out.append(await self._send(row, "whatsapp", owner.whatsapp, text, reason,
                                                "owner"))
        return out

    # -- the rate limit, in one place ------------------------------------------------------

    async def _admit(self, customer_id: int | None, channel: str, recipient: str, reason: str,
                     counted: bool = True) -> int | None:
        """Record an outgoing message; None (and a rate_limited row) when over the limit."""
        now = self.clock()
        since = to_stamp(now - timedelta(minutes=self.limits.rate_window_minutes))
        limit = self.limits.rate_limit

        def tx(conn: sqlite3.Connection) -> int | None:
            if counted and customer_id is not None:
                used = conn.execute(
                    "SELECT count(*) FROM notify_log WHERE customer_id = ? AND counted = 1 AND "
                    "status IN ('sent', 'queued', 'failed', 'sending') AND created_at >= ?",
                    (customer_id, since)).fetchone()[0]
                if used >= limit:
                    _insert(conn, customer_id, channel, recipient, reason, "rate_limited", False,
                            now)
                    return None
            return _insert(conn, customer_id, channel, recipient, reason, "sending", counted,
                           now)

        return await self.db.write(tx)

    async def _admit_owner(self, customer_id: int | None, channel: str, reason: str,
                           counted: bool) -> tuple[int | None, str]:
        """(notify_log row or None, text to append): the owner's hourly cap per channel,
        then the customer's own limit. None with a text: held by the cap."""
        cap = self.settings.security.owner_notices_per_hour
        now = self.clock()
        since = to_stamp(now - timedelta(hours=1))

        def used(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "SELECT count(*) FROM notify_log WHERE recipient = 'owner' AND channel = ? AND "
                "status IN ('sent', 'queued', 'sending') AND created_at >= ?",
                (channel, since)).fetchone()[0]

        count = await self.db.read(used)
        if count >= cap:
            log.warning("%s to the owner by %s held: %d this hour already", reason, channel,
                        count)
            await self._record(customer_id, channel, "owner", reason, "held", False)
            return None, "held"
        row = await self._admit(customer_id, channel, "owner", reason, counted)
        if row is None:
            return None, ""
        last = (f"\n\n(That is {cap} notices this hour, the most there will be: the next "
                "messages are kept for you and in the summaries.)") if count == cap - 1 else ""
        return row, last

    async def _send(self, row: int, channel: Channel, number: str, body: str, reason: str,
                    recipient: str) -> Delivery:
        assert self.notifier is not None
        try:
            key = _effect_key(reason, f"{channel}:{recipient}")
            if key is None:
                await self.notifier.send_text(channel, number, body, reason)
            else:
                await self.notifier.send_text(channel, number, body, reason, dedupe_key=key)
        except Exception as exc:  # noqa: BLE001 - CancelledError is not an Exception
            log.error("%s to %s %s failed: %s", reason, recipient, mask_phone(number), exc)
            await self._status(row, "failed")
            return Delivery("failed", channel)
        await self._status(row, "sent")
        log.info("%s sent to %s %s by %s", reason, recipient, mask_phone(number), channel)
        return Delivery("sent", channel)

    async def _status(self, row: int, status: str) -> None:
        await self.db.execute("UPDATE notify_log SET status = ? WHERE id = ?", (status, row))

    async def _record(self, customer_id: int | None, channel: str, recipient: str, reason: str,
                      status: str, counted: bool) -> None:
        now = self.clock()
        await self.db.write(lambda c: _insert(c, customer_id, channel, recipient, reason, status,
                                              counted, now))


def _effect_key(reason: str, where: str) -> str | None:
    """Inside a tool run for an inbound message: one message per run, reason and channel."""
    effect = current_effect.get()
    return f"{effect}:{reason}:{where}" if effect else None


def _insert(conn: sqlite3.Connection, customer_id: int | None, channel: str, recipient: str,
            reason: str, status: str, counted: bool, now: datetime) -> int:
    return int(conn.execute(
        "INSERT INTO notify_log(customer_id, channel, recipient, reason, status, counted, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (customer_id, channel, recipient, reason, status, int(counted), to_stamp(now))
    ).lastrowid)
