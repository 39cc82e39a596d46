"""X-Twilio-Signature checks for webhooks and the Media Streams WebSocket upgrade.

Twilio signs the URL it requested (plus, for form posts, every POST parameter). Behind a tunnel
or proxy the process sees ``http://127.0.0.1:PORT/...``, so the URL to check is rebuilt from the
configured public base URL plus the raw path and query of the request (aiohttp:
``request.rel_url.raw_path_qs``), never from the Host header. The WebSocket upgrade is signed
over the ``wss://`` URL from the TwiML, with no parameters.

The HMAC itself is ``twilio.request_validator.RequestValidator``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"  # aiohttp headers are case-insensitive


def signed_url(public_url: str, path_qs: str, *, websocket: bool = False) -> str:
    """The URL Twilio signed: ``public_url`` (scheme://host[:port][/prefix]) + raw ``path_qs``.

    With ``websocket=True`` the scheme becomes ``wss`` (``ws`` for an ``http`` base), which is
    what Twilio signs for the ``<Stream url>`` upgrade.
    """
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"public_url must be an absolute http(s) URL, got {public_url!r}")
    if parts.query or parts.fragment:
        raise ValueError("public_url must not have a query or fragment")
    if not path_qs.startswith("/"):
        raise ValueError(f"path_qs must start with '/', got {path_qs!r}")
    scheme = parts.scheme
    if websocket:
        scheme = "wss" if scheme in ("https", "wss") else "ws"
    elif scheme in ("ws", "wss"):
        scheme = "https" if scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{path_qs}"


def validate(
    auth_token: str,
    url: str,
    params: Mapping[str, Any] | None,
    signature: str | None,
) -> bool:
    """True if ``signature`` is Twilio's signature of ``url`` + ``params`` (all POST fields, e.g.
    aiohttp's ``await request.post()``; ``None``/``{}`` for a WebSocket upgrade or a GET)."""
    if not signature or not auth_token:
        return False
    ok = RequestValidator(auth_token).validate(url, params or {}, signature)
    if not ok:
        logger.warning("Twilio signature mismatch for %s", _redact(url))
    return ok


def validate_json_body(auth_token: str, url: str, body: bytes | str, signature: str | None) -> bool:
    """For JSON-bodied webhooks: the signature covers the URL (which carries ``bodySHA256``, the
    hex SHA-256 of the raw body) and the body must match that hash."""
    if not signature or not auth_token:
        return False
    if "bodySHA256=" not in urlsplit(url).query:
        logger.warning("JSON webhook without bodySHA256 in %s", _redact(url))
        return False
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    ok = RequestValidator(auth_token).validate(url, text, signature)
    if not ok:
        logger.warning("Twilio signature or body hash mismatch for %s", _redact(url))
    return ok


def _redact(url: str) -> str:
    """Log the path only: query strings may carry phone numbers or tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class SignatureVerifier:
    """Binds the auth token and public base URL; what the aiohttp handlers call."""

    def __init__(self, auth_token: str, public_url: str) -> None:
        if not auth_token:
            raise ValueError("auth_token must not be empty")
        signed_url(public_url, "/")  # validate the base URL now, not on the first call
        self._token = auth_token
        self._public_url = public_url

    def check_form(self, path_qs: str, params: Mapping[str, Any], signature: str | None) -> bool:
        return validate(self._token, signed_url(self._public_url, path_qs), params, signature)

    def check_json(self, path_qs: str, body: bytes | str, signature: str | None) -> bool:
        return validate_json_body(
            self._token, signed_url(self._public_url, path_qs), body, signature
        )

    def check_websocket(self, path_qs: str, signature: str | None) -> bool:
        url = signed_url(self._public_url, path_qs, websocket=True)
        return validate(self._token, url, {}, signature)
