"""A stand-in for Twilio's REST API on loopback, enough of it for the twilio library.

- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form-encoded, HTTP basic auth checked)
  creates a message and answers 201 with Twilio's JSON (sid "SM...", status "queued", ...).
- ``GET  /2010-04-01/Accounts/{sid}/Messages.json?To=&From=&PageSize=`` lists them (newest
  first) as a Twilio page.
- Media: ``add_media(...)`` returns a Twilio-style media URL served (GET, basic auth) here.
- ``send_statuses(...)`` plays Twilio's status callbacks: signed with the auth token over the
  ``StatusCallback`` URL the message was created with, POSTed to the app under test.

What each create request gets is scripted: ``script(Ok(), Fail(500), Hang(5), Drop())`` queues
outcomes, consumed in order; when the queue is empty the message is created. ``Fail`` answers
an error (429, 500, or a Twilio error code such as 21211); ``Hang`` creates the message (or
not) and answers only after a delay (a client timeout leaves the outcome unknown); ``Drop``
closes the connection without an answer. ``stop()`` makes the port refuse connections;
``start()`` again reuses it. WhatsApp recipients put in ``outside_window`` get error 63016
for free-form messages (synchronously, or as a failed status callback with
``window_error="async"``). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import itertools
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Union
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

API = "/2010-04-01"


@dataclass(frozen=True)
class Ok:
    """Create the message (the default)."""


@dataclass(frozen=True)
class Fail:
    status: int                 # HTTP status: 400, 401, 429, 500, 503 ...
    code: int | None = None     # Twilio error code (21211, 63016 ...); defaults to the status
    message: str = "scripted failure"


@dataclass(frozen=True)
class Hang:
    seconds: float              # answer only after this long
    create: bool = True         # the message exists at Twilio all the same


@dataclass(frozen=True)
class Drop:
    create: bool = False        # close the connection without answering (after creating?)


Outcome = Union[Ok, Fail, Hang, Drop]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, list[str]]
    authorized: bool

    def one(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None


@dataclass
class FakeMessage:
    sid: str
    to: str
    from_: str
    body: str
    content_sid: str | None
    status_callback: str | None
    created: datetime
    status: str = "queued"
    error_code: int | None = None
    statuses_sent: list[str] = field(default_factory=list)

    def as_json(self, account_sid: str) -> dict[str, Any]:
        stamp = email.utils.format_datetime(self.created)
        uri = f"{API}/Accounts/{account_sid}/Messages/{self.sid}.json"
        return {
            "account_sid": account_sid, "api_version": "2010-04-01", "body": self.body,
            "date_created": stamp, "date_updated": stamp, "date_sent": None,
            "direction": "outbound-api", "error_code": self.error_code, "error_message": None,
            "from": self.from_, "messaging_service_sid": None, "num_media": "0",
            "num_segments": "1", "price": None, "price_unit": "USD", "sid": self.sid,
            "status": self.status, "to": self.to, "uri": uri,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        }


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class FakeTwilio:
    def __init__(self, account_sid: str, auth_token: str, port: int = 0) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.port = port
        self.requests: list[Recorded] = []
        self.messages: list[FakeMessage] = []
        self.outside_window: set[str] = set()
        self.window_error = "sync"          # or "async": accepted, then a failed callback
        self.media_failures = 0             # the next N media downloads answer 500
        self._script: list[Outcome] = []
        self._media: dict[str, tuple[str, bytes]] = {}
        self._runner: web.AppRunner | None = None
        self._counter = itertools.count()

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> "FakeTwilio":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Close the port: requests now get 'connection refused'."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeTwilio":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting -----------------------------------------------------------------------------
    def script(self, *outcomes: Outcome) -> None:
        self._script.extend(outcomes)

    def add_media(self, content_type: str, data: bytes, message_sid: str | None = None) -> str:
        """Serve ``data``; returns the URL Twilio would put in MediaUrlN."""
        message_sid = message_sid or _sid("MM")
        path = f"{API}/Accounts/{self.account_sid}/Messages/{message_sid}/Media/{_sid('ME')}"
        self._media[path] = (content_type, data)
        return self.base_url + path

    def add_recording(self, data: bytes, call_sid: str | None = None) -> str:
        """Serve a call recording; returns the RecordingUrl Twilio would post (without an
        extension: GET it with ".wav" appended, as Twilio serves it)."""
        path = f"{API}/Accounts/{self.account_sid}/Recordings/{_sid('RE')}"
        self._media[path + ".wav"] = ("audio/x-wav", data)
        return self.base_url + path

    # -- inspection ----------------------------------------------------------------------------
    def creates(self) -> list[Recorded]:
        return [r for r in self.requests
                if r.method == "POST" and r.path.endswith("/Messages.json")]

    def sent_to(self, to: str) -> list[FakeMessage]:
        return [m for m in self.messages if m.to == to]

    # -- status callbacks ----------------------------------------------------------------------
    async def send_statuses(self, app_base_url: str, status: str = "delivered",
                            messages: list[FakeMessage] | None = None,
                            error_code: int | None = None) -> list[int]:
        """POST a signed status callback for each message (those created with a callback
        URL); the URL's host is replaced by ``app_base_url``, the signature is over the
        original (public) URL as Twilio signs it. Returns the HTTP statuses."""
        results = []
        validator = RequestValidator(self.auth_token)
        async with aiohttp.ClientSession() as session:
            for msg in messages if messages is not None else list(self.messages):
                if not msg.status_callback:
                    continue
                params = {"MessageSid": msg.sid, "SmsSid": msg.sid, "MessageStatus": status,
                          "SmsStatus": status, "AccountSid": self.account_sid,
                          "From": msg.from_, "To": msg.to, "ApiVersion": "2010-04-01"}
                if error_code is not None:
                    params["ErrorCode"] = str(error_code)
                signature = validator.compute_signature(msg.status_callback, params)
                parts = urlsplit(msg.status_callback)
                target = app_base_url.rstrip("/") + parts.path + (
                    f"?{parts.query}" if parts.query else "")
                async with session.post(target, data=params,
                                        headers={"X-Twilio-Signature": signature}) as resp:
                    results.append(resp.status)
                msg.status = status
                msg.statuses_sent.append(status)
        return results

    async def play_window_failures(self, app_base_url: str) -> list[int]:
        """window_error="async": the failed callbacks (63016) for messages outside the window."""
        failing = [m for m in self.messages if m.error_code == 63016 and "failed" not in
                   m.statuses_sent]
        return await self.send_statuses(app_base_url, "failed", failing, error_code=63016)

    # -- the API -------------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid and password == self.auth_token

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        form = await request.post() if request.method == "POST" else {}
        values: dict[str, list[str]] = {}
        for key in form:
            values[key] = [str(v) for v in form.getall(key)]  # type: ignore[union-attr]
        authorized = self._authorized(request)
        self.requests.append(Recorded(request.method, request.path, dict(request.query),
                                      values, authorized))
        if not authorized:
            return _error(401, 20003, "Authentication Error - invalid username")
        messages_path = f"{API}/Accounts/{self.account_sid}/Messages.json"
        if request.path == messages_path and request.method == "POST":
            return await self._create(request, values)
        if request.path == messages_path and request.method == "GET":
            return self._list(request)
        if request.path in self._media and request.method == "GET":
            if self.media_failures > 0:
                self.media_failures -= 1
                return _error(500, 20500, "media temporarily unavailable")
            content_type, data = self._media[request.path]
            return web.Response(body=data, content_type=content_type)
        return _error(404, 20404, f"The requested resource {request.path} was not found")

    async def _create(self, request: web.Request, form: dict[str, list[str]]) -> web.StreamResponse:
        def one(name: str) -> str | None:
            v = form.get(name)
            return v[0] if v else None

        outcome = self._script.pop(0) if self._script else Ok()
        if isinstance(outcome, Fail):
            return _error(outcome.status, outcome.code or outcome.status, outcome.message)
        to, from_, body, content = one("To"), one("From"), one("Body"), one("ContentSid")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body and not content:
            return _error(400, 21602, "Message body is required.")
        outside = to in self.outside_window and not content
        if outside and self.window_error == "sync":
            return _error(400, 63016, "Failed to send freeform message because you are outside "
                                      "the allowed window. Please use a Template.")
        create = not isinstance(outcome, (Hang, Drop)) or outcome.create
        msg = None
        if create:
            msg = FakeMessage(_sid("SM"), to, from_, body or f"[template {content}]", content,
                              one("StatusCallback"), datetime.now(timezone.utc),
                              error_code=63016 if outside else None)
            self.messages.append(msg)
        if isinstance(outcome, Drop):
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
            return web.Response(status=500)  # never reaches the client
        if isinstance(outcome, Hang):
            await asyncio.sleep(outcome.seconds)
        if msg is None:
            return _error(500, 20500, "internal error")
        return web.json_response(msg.as_json(self.account_sid), status=201)

    def _list(self, request: web.Request) -> web.Response:
        to, from_ = request.query.get("To"), request.query.get("From")
        size = int(request.query.get("PageSize", "50"))
        found = [m for m in reversed(self.messages)
                 if (not to or m.to == to) and (not from_ or m.from_ == from_)][:size]
        uri = request.path_qs
        return web.json_response({
            "messages": [m.as_json(self.account_sid) for m in found],
            "end": max(len(found) - 1, 0), "first_page_uri": uri, "next_page_uri": None,
            "page": 0, "page_size": size, "previous_page_uri": None, "start": 0, "uri": uri,
        })


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"},
                             status=status)
