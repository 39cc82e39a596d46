"""Stand-ins for the business actions' tests: an SMTP server on loopback (aiosmtpd), a
recording WhatsApp/SMS notifier, a settable clock, and the services wired on a temp database."""

from __future__ import annotations

import email
import email.policy
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Mapping

from aiosmtpd.controller import Controller

from appliance.actions.mailer import RetryPolicy
from appliance.actions.services import ActionServices
from appliance.actions.settings import ActionSettings, CrmSettings, GoogleCalendarSettings
from appliance.config import Settings, SmtpSettings
from appliance.config_actions import read_appointments, read_notify
from appliance.config_reader import Reader
from appliance.conversation.events import ActionRequested, ReplyDone, TextDelta
from appliance.conversation.memory import Memory
from appliance.conversation.tools import ToolContext, ToolRegistry
from appliance.store.db import Database
from tests.support.fakes import make_settings

OWNER_EMAIL = "owner@sunrise.example"
OWNER_WHATSAPP = "+972509990000"
OPERATOR = "+972501112233"

JLM = ZoneInfo("Asia/Jerusalem")
NOW = datetime(2025, 3, 16, 10, 0, tzinfo=JLM)    # the harness's clock: Sunday, within hours
MAIL_NOW = datetime(2025, 3, 16, 8, 0, tzinfo=timezone.utc)   # the e-mail outbox tests' clock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeSmtp:
    """An SMTP server on 127.0.0.1 (aiosmtpd, its own thread). `reject` = an SMTP status line
    answered to RCPT (e.g. "550 no such user" or "451 try later")."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.reject: str | None = None
        self._controller: Controller | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.reject:
            return self.reject
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content,
                                                      policy=email.policy.default))
        return "250 Message accepted for delivery"

    def start(self) -> "FakeSmtp":
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class Sent:
    channel: str
    to: str
    body: str
    reason: str


@dataclass
class RecordingNotifier:
    """The Notifier protocol; records every message, or fails when `fail` is set."""

    sent: list[Sent] = field(default_factory=list)
    fail: bool = False
    keys: set[str | None] = field(default_factory=set)

    async def send_text(self, channel: str, to: str, body: str, reason: str,
                        dedupe_key: str | None = None) -> None:
        if self.fail:
            raise ConnectionError("twilio unreachable")
        if dedupe_key is not None and dedupe_key in self.keys:
            return                                   # as the outbox: once per key
        self.keys.add(dedupe_key)
        self.sent.append(Sent(channel, to, body, reason))


def smtp_settings(port: int) -> SmtpSettings:
    """The SMTP stand-in on loopback at `port`, without STARTTLS or a login."""
    return SmtpSettings(host="127.0.0.1", port=port, username="", password="",
                        sender="receptionist@sunrise.example", starttls=False)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def action_settings(tmp_path: Path, *, smtp_port: int = 0, gemini_url: str = "",
                    sections: Mapping[str, Mapping[str, object]] | None = None) -> Settings:
    values: dict[str, dict[str, object]] = {
        "business": {"transfer_hours": "sun-thu 09:00-18:00; fri 09:00-13:00"},
        "twilio": {"operator_number": OPERATOR, "transfer_numbers": OPERATOR},
        "owner": {"email": OWNER_EMAIL, "whatsapp": OWNER_WHATSAPP},
        "messaging": {"whatsapp_from": "whatsapp:+14155238886", "sms_from": "+14155550000"},
        "smtp": {"host": "127.0.0.1" if smtp_port else "", "port": smtp_port or 587,
                 "sender": "receptionist@sunrise.example", "starttls": "false"},
    }
    for section, keys in (sections or {}).items():
        values.setdefault(section, {}).update(keys)
    return make_settings(tmp_path, gemini_url=gemini_url,
                         api_key="test-key" if gemini_url else "", sections=values)


@dataclass
class Harness:
    settings: Settings
    db: Database
    services: ActionServices
    notifier: RecordingNotifier
    clock: Clock
    registry: ToolRegistry
    memory: Memory

    async def context(self, phone: str, channel: str = "call",
                      call_sid: str | None = None, verified: bool = True) -> ToolContext:
        """`verified`: the caller already read back a one-time code (actions/stepup.py); the
        step-up itself is tested in test_stepup.py."""
        customer = await self.memory.customer(phone)
        call_id = None
        if channel in ("call", "gather"):
            call_id = await self.db.execute(
                "INSERT INTO calls(call_sid, customer_id, caller, mode) VALUES (?, ?, ?, ?)",
                (call_sid or f"CA{phone[1:]}{id(object())}", customer.id, phone, "stream"))
        return ToolContext(phone=customer.phone, channel=channel, call_id=call_id,
                           customer=customer, settings=self.settings, memory=self.memory,
                           verified=verified)

    async def run(self, ctx: ToolContext, name: str, args: dict[str, Any]) -> str:
        """As the engine runs a tool: check_args (drops unknown keys), then the handler."""
        from appliance.conversation.tools import ToolError, check_args

        tool = self.registry.get(name)
        assert tool is not None, name
        try:
            checked = check_args(tool, args)
            return await tool.handler(ctx, checked)
        except ToolError as exc:
            return f"{name} failed: {exc}."

    def close(self) -> None:
        self.db.close()


FAST_RETRY = RetryPolicy(first_s=30, poll_s=0.2, timeout_s=3)


async def make_harness(tmp_path: Path, now: datetime, *, smtp_port: int = 0,
                       gemini_url: str = "",
                       appointments: Mapping[str, str] | None = None,
                       notify: Mapping[str, str] | None = None,
                       sections: Mapping[str, Mapping[str, object]] | None = None,
                       policy: RetryPolicy = FAST_RETRY,
                       google: GoogleCalendarSettings | None = None,
                       crm: CrmSettings | None = None) -> Harness:
    from appliance.actions.tools import register_tools

    settings = action_settings(tmp_path, smtp_port=smtp_port, gemini_url=gemini_url,
                               sections=sections)
    db = await Database.open(settings.storage.database)
    clock = Clock(now)
    notifier = RecordingNotifier()
    reader = Reader.of({"appointments": {"hours": "sun-thu 09:00-18:00; fri 09:00-13:00",
                                         "min_notice_minutes": "30", **(appointments or {})},
                        "notify": dict(notify or {})})
    config = ActionSettings(
        appointments=read_appointments(reader), notify=read_notify(reader),
        google=google or GoogleCalendarSettings(), crm=crm or CrmSettings())
    reader.check_unknown_keys()
    services = ActionServices.build(settings, db, notifier, config=config, clock=clock,
                                    mail_policy=policy)
    registry = ToolRegistry.default()
    register_tools(registry, services)
    return Harness(settings, db, services, notifier, clock, registry, Memory(db))


async def say(conversation, text: str) -> tuple[str, list]:
    """The caller says `text`: the whole reply and the actions the engine asked for."""
    reply, actions = "", []
    async for event in conversation.reply(text, language="en"):
        if isinstance(event, TextDelta):
            reply += event.text
        elif isinstance(event, ActionRequested):
            actions.append(event.action)
        elif isinstance(event, ReplyDone):
            pass
    return reply, actions
