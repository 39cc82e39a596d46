"""The signature check every Twilio webhook and the WebSocket upgrade go through.

Fail closed: with validation on and no TWILIO_AUTH_TOKEN, every request is refused (403) and
/healthz says why. With validation off (development only) everything is let through.

Nothing is parsed before it is needed: a request without a signature is refused before its body
is read; the body must be application/x-www-form-urlencoded, at most MAX_BODY bytes, UTF-8
(also inside the %-escapes), else 400 (413 when too large) - never a 500 and a traceback. A
webhook naming another Twilio account (AccountSid) is refused too, and (`once`) a replay of a
signed webhook already answered (telephony/replay.py).
"""

from __future__ import annotations

import logging
from typing import Mapping
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from ..config import Settings
from .replay import ReplayCache
from .signature import SIGNATURE_HEADER, SignatureVerifier

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024          # Twilio's webhook forms are a few kB
FORM = "application/x-www-form-urlencoded"


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    """The form fields, or 400/413 for anything that is not a small UTF-8 urlencoded form."""
    if (request.content_length or 0) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY, request.content_length or 0)
    body = b""
    while chunk := await request.content.read(MAX_BODY + 1 - len(body)):
        body += chunk
        if len(body) > MAX_BODY:           # no Content-Length (chunked): counted as it comes
            raise web.HTTPRequestEntityTooLarge(MAX_BODY, len(body))
    if body and request.content_type != FORM:
        raise web.HTTPBadRequest(text=f"expected {FORM}\n")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise web.HTTPBadRequest(text="the form is not UTF-8\n") from None
    return MultiDictProxy(MultiDict(pairs))


class TwilioGuard:
    def __init__(self, settings: Settings, replay: ReplayCache | None = None) -> None:
        t = settings.twilio
        self.enabled = t.validate_signatures
        self._account = t.account_sid
        self._replay = replay
        self._verifier = (SignatureVerifier(t.auth_token, settings.server.public_url)
                          if self.enabled and t.auth_token else None)

    def _refuse(self, request: web.Request, why: str) -> web.HTTPForbidden:
        log.warning("refused %s %s: %s", request.method, request.path, why)
        return web.HTTPForbidden(text="forbidden\n")

    async def form(self, request: web.Request, *, once: bool = False,
                   strict_account: bool = False) -> Mapping[str, str]:
        """The POST parameters of a signed webhook, or HTTP 403. `once`: a byte-identical
        replay within the replay window is refused too. `strict_account`: the AccountSid
        must be present (Twilio sends it on every voice webhook) when [twilio] account_sid
        is set."""
        if not self.enabled:
            return await read_form(request)
        if self._verifier is None:
            raise self._refuse(request, "TWILIO_AUTH_TOKEN is not set")
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise self._refuse(request, "missing X-Twilio-Signature")
        params = await read_form(request)
        if not self._verifier.check_form(request.rel_url.raw_path_qs, params, signature):
            raise self._refuse(request, "bad X-Twilio-Signature")
        account = params.get("AccountSid")
        if self._account and (account is not None or strict_account) \
                and account != self._account:
            raise self._refuse(request, "the webhook is for another Twilio account")
        if once and self._replay is not None and not self._replay.first_time(
                ReplayCache.key(request.rel_url.raw_path_qs, signature, params)):
            raise self._refuse(request, "a replay of a webhook already answered")
        return params

    def websocket(self, request: web.Request) -> None:
        """Check the upgrade request before it is accepted."""
        if not self.enabled:
            return
        if self._verifier is None:
            raise self._refuse(request, "TWILIO_AUTH_TOKEN is not set")
        signature = request.headers.get(SIGNATURE_HEADER)
        if not self._verifier.check_websocket(request.rel_url.raw_path_qs, signature):
            raise self._refuse(request, "bad or missing signature on the WebSocket upgrade")
