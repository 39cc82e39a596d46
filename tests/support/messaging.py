"""The messaging test harness (used by tests/messaging/ and a few others).

``Harness`` runs the real messaging routes (``appliance.messaging.webhooks.add_routes``) in an
aiohttp test server on loopback, on a real SQLite file, with the outbox pointed at
``FakeTwilio`` through ``[twilio] api_base_url``. Webhooks are signed with the twilio library's
own ``RequestValidator`` over the public URL, as Twilio signs them. ``restart()`` tears the app
down (background tasks cancelled mid-flight, as a kill would leave them) and starts a new one on
the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from appliance.config import Settings, load_settings
from appliance.messaging.inbound import InboundOptions
from appliance.messaging.media import MediaLimits
from appliance.messaging.failures import RetryPolicy
from appliance.messaging.outbox import OutboxOptions
from appliance.messaging.webhooks import (MessagingChannel, MessagingOptions, add_routes,
                                         build_channel)
from appliance.runtime import Component
from appliance.store.db import Database
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.fixtures import ACCOUNT_SID, PUBLIC_URL, TOKEN

AUTH_TOKEN = TOKEN
WA_FROM = "whatsapp:+14155238886"
SMS_FROM = "+14155550100"
TEMPLATE_SID = "HX" + "ab" * 16

FAST = MessagingOptions(
    outbox=OutboxOptions(retry=RetryPolicy(base_s=0.05, cap_s=0.4, max_attempts=6, jitter=0.1),
                         request_timeout_s=1.5, poll_s=0.5, concurrency=4),
    inbound=InboundOptions(engine_timeout_s=5.0, sweep_s=0.5, concurrency=4),
    media=MediaLimits(download_timeout_s=5.0, retry_delay_s=0.05),
)


# ----------------------------------------------------------------------------------------------
# A scripted conversation engine with the real engine's interface

try:  # the real event types, once appliance/conversation/events.py exists
    from appliance.conversation.events import Filler, ReplyDone, TextDelta  # type: ignore
except ImportError:  # pragma: no cover - until the conversation engine lands
    @dataclass(frozen=True)
    class TextDelta:  # type: ignore[no-redef]
        text: str

    @dataclass(frozen=True)
    class Filler:  # type: ignore[no-redef]
        text: str

    @dataclass(frozen=True)
    class ReplyDone:  # type: ignore[no-redef]
        full_text: str
        model: str


@dataclass(frozen=True)
class Received:
    phone: str
    channel: str
    text: str
    language: str | None


class ScriptedEngine:
    """``open(phone, channel)`` -> a conversation whose ``reply`` streams ``respond(text)``.

    Records what it was given (``received``) and what was reported delivered (``heard``).
    ``gate``: when set to an unset Event, replies wait for it (to stop the app mid-answer).
    ``fail``: raise instead of answering.
    """

    def __init__(self, respond: Callable[[str], str] | None = None,
                 delay_s: float | Callable[[str], float] = 0.0) -> None:
        self.respond = respond or (lambda text: f"Reply to: {text}")
        self.delay_s = delay_s
        self.received: list[Received] = []
        self.opened: list[tuple[str, str, Any]] = []
        self.heard: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def open(self, phone: str, channel: str, call_id: Any = None,
                   message_sid: str | None = None) -> "FakeConversation":
        self.opened.append((phone, channel, call_id))
        return FakeConversation(self, phone, channel)


class FakeConversation:
    def __init__(self, engine: ScriptedEngine, phone: str, channel: str) -> None:
        self.engine, self.phone, self.channel = engine, phone, channel

    async def reply(self, user_text: str, language: str | None = None):
        engine = self.engine
        engine.received.append(Received(self.phone, self.channel, user_text, language))
        if engine.gate is not None:
            await engine.gate.wait()
        delay = engine.delay_s(user_text) if callable(engine.delay_s) else engine.delay_s
        if delay:
            await asyncio.sleep(delay)
        if engine.fail is not None:
            raise engine.fail
        text = engine.respond(user_text)
        yield Filler("One moment...")
        for word in text.split(" "):
            yield TextDelta(word + " ")
        yield ReplyDone(text, "fake:scripted")

    async def mark_heard(self, full_text: str, interrupted: bool = False) -> None:
        self.engine.heard.append((self.phone, full_text))


# ----------------------------------------------------------------------------------------------
# Settings and signing

def write_settings(tmp_path: Path, api_base_url: str, *, template_sid: str = "",
                   database: Path | None = None, validate: bool = True, extra: str = "",
                   environ: dict[str, str] | None = None) -> Settings:
    ini = tmp_path / "config.ini"
    ini.write_text(f"""
[server]
public_url = {PUBLIC_URL}
secrets_file = {tmp_path / 'no-secrets.env'}
[twilio]
account_sid = {ACCOUNT_SID}
validate_signatures = {'true' if validate else 'false'}
api_base_url = {api_base_url}
[messaging]
whatsapp_from = {WA_FROM}
sms_from = {SMS_FROM}
whatsapp_template_sid = {template_sid}
reply_deadline_s = 5
[business]
language = en
[storage]
database = {database or tmp_path / 'appliance.db'}
{extra}""", encoding="utf-8")
    return load_settings(ini, environ={"TWILIO_AUTH_TOKEN": AUTH_TOKEN, **(environ or {})})


def sign(path_qs: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(PUBLIC_URL + path_qs, params)


def new_sid(prefix: str = "SM") -> str:
    return prefix + secrets.token_hex(16)


def inbound_params(sid: str, sender: str, body: str = "", *, to: str | None = None,
                   media: tuple[tuple[str, str], ...] = (), profile: str | None = None
                   ) -> dict[str, str]:
    """The form Twilio posts for an incoming message (``media``: (url, content type))."""
    whatsapp = sender.startswith("whatsapp:")
    params = {
        "ToCountry": "US", "SmsMessageSid": sid, "NumMedia": str(len(media)),
        "SmsSid": sid, "SmsStatus": "received", "Body": body,
        "To": to or (WA_FROM if whatsapp else SMS_FROM), "NumSegments": "1",
        "MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": sender, "ApiVersion": "2010-04-01",
    }
    if whatsapp:
        params["WaId"] = sender.split("+")[-1]
        params["ProfileName"] = profile or "Dana"
    for n, (url, content_type) in enumerate(media):
        params[f"MediaUrl{n}"] = url
        params[f"MediaContentType{n}"] = content_type
    return params


# ----------------------------------------------------------------------------------------------
# The harness

class Harness:
    def __init__(self, tmp_path: Path, fake: FakeTwilio, engine: Any = None, *, stt: Any = None,
                 template_sid: str = "", options: MessagingOptions = FAST,
                 make_engine: Callable[[Settings, Database], Awaitable[Any]] | None = None,
                 settings: Settings | None = None) -> None:
        """``make_engine(settings, db)``: build a real engine at every start (as a new
        process would); else ``engine`` (a ScriptedEngine by default) is used throughout."""
        self.tmp_path = tmp_path
        self.fake = fake
        self.make_engine = make_engine
        self.engine = engine if engine is not None else ScriptedEngine()
        self.stt = stt
        self.options = options
        self.settings = settings or write_settings(tmp_path, fake.base_url,
                                                   template_sid=template_sid)
        self.db: Database | None = None
        self.rt: MessagingChannel | None = None
        self.components: dict[str, Component] = {}
        self.client: TestClient | None = None

    @property
    def db_path(self) -> Path:
        return self.settings.storage.database

    async def start(self) -> "Harness":
        self.db = await Database.open(self.db_path)
        if self.make_engine is not None:
            self.engine = await self.make_engine(self.settings, self.db)
        self.rt = build_channel(self.settings, self.db, self.engine, self.stt, self.options,
                                report=self._report)
        app = web.Application(client_max_size=1024 * 1024)  # as appliance.app.build_app
        add_routes(app, self.rt)
        self.client = TestClient(TestServer(app, host="127.0.0.1"))
        await self.client.start_server()
        return self

    async def stop(self) -> None:
        """Stop the app as a crash would leave it: tasks cancelled wherever they are."""
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.make_engine is not None and self.engine is not None:
            await self.engine.close()
        if self.db is not None:
            self.db.close()
            self.db = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    @property
    def base_url(self) -> str:
        assert self.client is not None
        return str(self.client.make_url("/")).rstrip("/")

    def _report(self, name: str, ok: bool, detail: str) -> None:
        self.components[name] = Component(name, ok, detail)

    @property
    def channel(self) -> MessagingChannel:
        assert self.rt is not None
        return self.rt

    async def post(self, path: str, params: dict[str, str] | None = None, *,
                   signature: str | None = None, signed: bool = True, data: Any = None):
        assert self.client is not None
        headers = {}
        if signed:
            headers["X-Twilio-Signature"] = signature or sign(path, params or {})
        return await self.client.post(path, data=data if data is not None else params,
                                      headers=headers)

    async def send(self, sender: str, body: str = "", *, sid: str | None = None,
                   media: tuple[tuple[str, str], ...] = (), expect: int = 200) -> str:
        """One signed messaging webhook; returns the MessageSid."""
        sid = sid or new_sid("MM" if media else "SM")
        resp = await self.post("/message", inbound_params(sid, sender, body, media=media))
        text = await resp.text()
        assert resp.status == expect, (resp.status, text)
        if expect == 200:
            assert resp.content_type == "application/xml"
            assert "<Response" in text and "<Message" not in text
        return sid

    # -- database ------------------------------------------------------------------------------
    def rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        """Read the database file directly (a separate connection, as an operator would)."""
        conn = sqlite3.connect(self.db_path)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()

    def execute(self, sql: str, params: tuple = ()) -> None:
        conn = sqlite3.connect(self.db_path)
        try:
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()

    def count(self, table: str) -> int:
        return self.rows(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]

    async def wait_for(self, check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0,
                       what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    def settled(self) -> bool:
        """Every message answered or ignored and every outbound row finished."""
        open_in = self.rows("SELECT COUNT(*) AS n FROM messages_in WHERE state = 'received'")
        open_out = self.rows("SELECT COUNT(*) AS n FROM messages_out WHERE state IN "
                             "('pending','sending','unknown')")
        return open_in[0]["n"] == 0 and open_out[0]["n"] == 0

    async def settle(self, timeout: float = 15.0) -> None:
        await self.wait_for(self.settled, timeout, "messages to be answered and sent")


MESSAGE_TABLES = ("messages_in", "message_media", "messages_out", "message_status_events",
                  "message_consent")


def nothing_written(h: Harness) -> bool:
    """No message, media, status, consent or customer row: what a refused webhook leaves."""
    return all(h.count(table) == 0 for table in MESSAGE_TABLES) and h.count("customers") == 0


def twilio_stand_in() -> FakeTwilio:
    """The fake REST server for this account (``async with``)."""
    return FakeTwilio(ACCOUNT_SID, AUTH_TOKEN)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, fake: FakeTwilio, **kwargs: Any) -> AsyncIterator[Harness]:
    """A started Harness, stopped at the end (the `harness` fixture of tests/messaging/)."""
    h = await Harness(tmp_path, fake, **kwargs).start()
    try:
        yield h
    finally:
        await h.stop()


def query(db: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


async def wait_until(check, what: str = "the condition", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
