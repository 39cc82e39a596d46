"""WhatsApp and SMS webhooks: ``POST /message`` (both channels; WhatsApp senders look like
``whatsapp:+972...``) and ``POST /message-status`` (Twilio's status callback).

``/message`` checks the signature, validates the fields, stores the message (keyed by
MessageSid, so a retried webhook is recognised) and answers an empty ``<Response/>`` at once
(within ``[messaging] reply_deadline_s`` at worst: past it, 503 and Twilio's retry is
deduplicated). The answer always goes out afterwards through the outbox, never as TwiML: a
TwiML ``<Message>`` is lost if the HTTP answer is (crash after commit, tunnel drop, Twilio's
15 s limit), gets no SID and no status callback, and could overtake or trail REST-sent
replies; one path gives ordering, retries, delivery status and crash safety for the price of
one REST request per reply.

Nothing is written unless the request is signed and complete: a forged signature gets 403, a
missing or malformed field 400, an oversized body 413 (aiohttp's own limit, or
``MAX_BODY_CHARS`` for the Body field).

``build_channel`` (called by appliance.compose, or by a test with its own engine) makes the
channel on an outbox built beforehand (the business actions send through the same outbox:
``outbox.enqueue`` sends a message nobody asked for, e.g. a notification to the owner);
``add_routes`` mounts it, starts the outbox, the per-customer workers and the media downloader
on ``app.on_startup`` and stops them (cancelled and awaited) on ``app.on_cleanup``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

from aiohttp import web

from ..config import Settings
from ..conversation.engine import Engine
from ..logs import log_context, mask_phone
from ..store.db import Database
from ..telephony import twiml
from ..telephony.guard import TwilioGuard
from . import inbound_store
from .rows import Inbound, MediaItem
from .inbound import InboundOptions, InboundWorkers, Responder
from .media import MediaFetcher, MediaLimits, VoiceStt, media_kind
from .outbox import Outbox, OutboxOptions

Report = Callable[[str, bool, str], None]   # (component, ok, detail) for /healthz

log = logging.getLogger(__name__)

XML = "application/xml"
MAX_BODY_CHARS = 16_000   # Twilio sends at most 1,600 (SMS) / 4,096 (WhatsApp) characters
MAX_MEDIA = 10            # Twilio's limit per message
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SID = re.compile(r"^[A-Za-z]{2}[0-9A-Za-z]{10,62}$")


@dataclass(frozen=True)
class MessagingOptions:
    outbox: OutboxOptions = field(default_factory=OutboxOptions)
    inbound: InboundOptions = field(default_factory=InboundOptions)
    media: MediaLimits = field(default_factory=MediaLimits)


class BadWebhook(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_inbound(params: Mapping[str, str]) -> Inbound:
    """A messaging webhook's form -> ``Inbound``, or ``BadWebhook`` saying what is wrong."""
    def required(name: str) -> str:
        value = params.get(name)
        if not isinstance(value, str) or not value.strip():
            raise BadWebhook(400, f"{name} missing")
        return value.strip()

    sid = required("MessageSid")
    if not _SID.match(sid):
        raise BadWebhook(400, "MessageSid malformed")
    sender = required("From")
    to = required("To")
    channel = "whatsapp" if sender.lower().startswith("whatsapp:") else "sms"
    phone = sender.split(":", 1)[1].strip() if channel == "whatsapp" else sender
    if not _E164.match(phone):
        raise BadWebhook(400, "From is not a phone number")
    body = params.get("Body", "")
    if not isinstance(body, str):
        raise BadWebhook(400, "Body is not text")
    if len(body) > MAX_BODY_CHARS:
        raise BadWebhook(413, f"Body longer than {MAX_BODY_CHARS} characters")
    try:
        count = int(params.get("NumMedia", "0") or "0")
    except (TypeError, ValueError):
        raise BadWebhook(400, "NumMedia is not a number") from None
    if not 0 <= count <= MAX_MEDIA:
        raise BadWebhook(400, f"NumMedia must be 0..{MAX_MEDIA}")
    items = []
    for n in range(count):
        url = params.get(f"MediaUrl{n}")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise BadWebhook(400, f"MediaUrl{n} missing")
        content_type = (params.get(f"MediaContentType{n}") or "application/octet-stream").strip()
        items.append(MediaItem(n, url, content_type[:200], media_kind(content_type)))
    profile = params.get("ProfileName")
    return Inbound(sid, channel, phone, sender, to, body,
                         profile[:200] if isinstance(profile, str) and profile else None,
                         tuple(items))


def build_outbox(settings: Settings, db: Database | None,
                 options: MessagingOptions = MessagingOptions()) -> Outbox | None:
    """The outbox, built before the app starts (it is started with the channel)."""
    return Outbox(settings, db, options.outbox) if db is not None else None


@dataclass
class MessagingChannel:
    settings: Settings
    db: Database | None
    engine: Engine | None
    stt: VoiceStt | None
    outbox: Outbox | None
    options: MessagingOptions = field(default_factory=MessagingOptions)
    report: Report | None = None
    workers: InboundWorkers | None = None
    fetcher: MediaFetcher | None = None

    def __post_init__(self) -> None:
        self.guard = TwilioGuard(self.settings)

    # -- lifecycle -----------------------------------------------------------------------------
    async def on_startup(self, app: web.Application) -> None:
        if self.db is None or self.outbox is None:
            log.error("messaging disabled: the database is not open")
            return
        self.fetcher = MediaFetcher(self.settings, self.options.media)
        await self.fetcher.start()
        await self.outbox.start()
        responder = Responder(self.settings, self.db, self.engine, self.stt, self.fetcher,
                              self.options.inbound)
        self.workers = InboundWorkers(self.db, responder, self.outbox.notify,
                                      self.options.inbound)
        await self.workers.start()
        if self.report is not None:
            self.report("messaging", self.outbox.can_send,
                        "ready" if self.outbox.can_send else
                        "cannot send: set [twilio] account_sid and TWILIO_AUTH_TOKEN")

    async def on_cleanup(self, app: web.Application) -> None:
        if self.workers is not None:
            await self.workers.stop()
        if self.outbox is not None:
            await self.outbox.stop()
        if self.fetcher is not None:
            await self.fetcher.close()

    # -- handlers ------------------------------------------------------------------------------
    async def message(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request)
        try:
            msg = parse_inbound(params)
        except BadWebhook as exc:
            log.warning("messaging webhook refused (%d): %s", exc.status, exc.reason)
            return web.Response(status=exc.status, text=exc.reason + "\n")
        with log_context(msg.message_sid):
            if self.workers is None or self.db is None:
                return web.Response(status=503, text="messaging is not running\n")
            workers, phone = self.workers, msg.phone
            write = asyncio.ensure_future(self.db.write_durable(
                lambda c: inbound_store.insert_inbound(c, msg)))  # synchronous=FULL: acked = on disk)
            # Even if this request gives up waiting, a message that does get stored is answered.
            write.add_done_callback(lambda f: workers.notify(phone)
                                    if not f.cancelled() and f.exception() is None else None)
            try:
                _, new = await asyncio.wait_for(asyncio.shield(write),
                                                self.settings.messaging.reply_deadline_s)
            except TimeoutError:
                log.error("storing the message took too long; answering 503 so Twilio retries")
                return web.Response(status=503, text="busy, try again\n")
            except Exception:  # noqa: BLE001 - the transaction rolled back: nothing stored
                log.exception("could not store the message")
                return web.Response(status=500, text="could not store the message\n")
            if new:
                log.info("%s message from %s stored (%d chars, %d media)", msg.channel,
                         mask_phone(phone), len(msg.body), len(msg.media))
            else:
                log.info("retried webhook for a message already stored; not answered again")
            return web.Response(text=twiml.empty_messaging(), content_type=XML)

    async def status(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request)
        sid = (params.get("MessageSid") or "").strip()
        status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
        if not sid or not _SID.match(sid):
            return web.Response(status=400, text="MessageSid missing\n")
        if not status or len(status) > 32:
            return web.Response(status=400, text="MessageStatus missing\n")
        try:
            code = int(params["ErrorCode"]) if params.get("ErrorCode") else None
        except ValueError:
            return web.Response(status=400, text="ErrorCode is not a number\n")
        hint = request.query.get("out", "")
        out_hint = int(hint) if hint.isdigit() else None
        with log_context(sid):
            if self.outbox is None:
                return web.Response(status=503, text="messaging is not running\n")
            outcome = await self.outbox.on_status(sid, status, code, out_hint)
            if outcome.out_id is None:
                log.info("status %s for a message that is not ours", status)
            elif status in ("failed", "undelivered"):
                log.warning("message %d %s (error %s)", outcome.out_id, status, code)
            else:
                log.debug("message %d: %s", outcome.out_id, status)
        return web.Response(text="", status=200)


def build_channel(settings: Settings, db: Database | None, engine: Engine | None,
                  stt: VoiceStt | None, options: MessagingOptions = MessagingOptions(),
                  outbox: Outbox | None = None, report: Report | None = None
                  ) -> MessagingChannel:
    """The channel on `outbox` (built here when not given)."""
    outbox = outbox if outbox is not None else build_outbox(settings, db, options)
    return MessagingChannel(settings, db, engine, stt, outbox, options, report)


def add_routes(app: web.Application, channel: MessagingChannel) -> None:
    app.router.add_post("/message", channel.message)
    app.router.add_post("/message-status", channel.status)
    app.on_startup.append(channel.on_startup)
    app.on_cleanup.append(channel.on_cleanup)
