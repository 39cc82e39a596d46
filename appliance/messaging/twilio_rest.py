"""The twilio library's asyncio REST client, as the outbox and the media fetcher use it: every
request to ``[twilio] api_base_url`` (a loopback stand-in in tests), with a default timeout
and the library's request logging kept at WARNING (its INFO lines carry phone numbers)."""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from ..config import Settings

# The library logs every request and response (URLs with phone numbers) at INFO: keep that for
# debugging sessions only.
_http_log = logging.getLogger(__name__ + ".http")
_http_log.setLevel(logging.WARNING)


class RebasedHttpClient(AsyncTwilioHttpClient):
    """The library's aiohttp client, sending api.twilio.com requests to ``base_url`` instead
    (a loopback stand-in in tests) - the custom-HTTP-client route Twilio documents for this -
    and applying a default timeout (the library passes none, which aiohttp reads as "never")."""

    def __init__(self, base_url: str = "", timeout: float | None = None) -> None:
        super().__init__(timeout=timeout, logger=_http_log)
        self._base = urlsplit(base_url) if base_url else None

    def rebase(self, url: str) -> str:
        if self._base is None:
            return url
        parts = urlsplit(url)
        path = self._base.path.rstrip("/") + parts.path
        return urlunsplit((self._base.scheme, self._base.netloc, path, parts.query, ""))

    async def request(self, method: str, url: str, params: Any = None, data: Any = None,
                      headers: Any = None, auth: Any = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> Any:
        if auth is not None:  # as a header: aiohttp >= 3.14 deprecates BasicAuth objects
            headers = {**(headers or {}), "Authorization": basic_auth(*auth)}
        return await super().request(method, self.rebase(url), params=params, data=data,
                                     headers=headers, auth=None,
                                     timeout=timeout if timeout is not None else self.timeout,
                                     allow_redirects=allow_redirects)


def basic_auth(user: str, password: str) -> str:
    """An HTTP basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def make_client(settings: Settings, timeout_s: float) -> Client | None:
    """The REST client, or None when the account SID or auth token is missing.
    Call inside the running loop (the HTTP client opens an aiohttp session)."""
    t = settings.twilio
    if not t.account_sid or not t.auth_token:
        return None
    http = RebasedHttpClient(t.api_base_url, timeout=timeout_s)
    return Client(t.account_sid, t.auth_token, http_client=http)
