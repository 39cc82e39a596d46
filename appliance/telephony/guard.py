"""The signature check every Twilio webhook and the WebSocket upgrade go through.

Fail closed: with validation on and no TWILIO_AUTH_TOKEN, every request is refused (403) and
/healthz says why. With validation off (development only) everything is let through.
"""

from __future__ import annotations

import logging
from typing import Mapping

from aiohttp import web

from ..config import Settings
from .signature import SIGNATURE_HEADER, SignatureVerifier

log = logging.getLogger(__name__)


class TwilioGuard:
    def __init__(self, settings: Settings) -> None:
        t = settings.twilio
        self.enabled = t.validate_signatures
        self._verifier = (SignatureVerifier(t.auth_token, settings.server.public_url)
                          if self.enabled and t.auth_token else None)

    def _refuse(self, request: web.Request, why: str) -> web.HTTPForbidden:
        log.warning("refused %s %s: %s", request.method, request.path, why)
        return web.HTTPForbidden(text="forbidden\n")

    async def form(self, request: web.Request) -> Mapping[str, str]:
        """The POST parameters of a signed webhook, or HTTP 403."""
        params = await request.post()
        if not self.enabled:
            return params
        if self._verifier is None:
            raise self._refuse(request, "TWILIO_AUTH_TOKEN is not set")
        signature = request.headers.get(SIGNATURE_HEADER)
        if not self._verifier.check_form(request.rel_url.raw_path_qs, params, signature):
            raise self._refuse(request, "bad or missing X-Twilio-Signature")
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
