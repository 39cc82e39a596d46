"""Optional: trust Cloudflare Access in front of the tunnel. When configured, a request whose
`Cf-Access-Jwt-Assertion` header carries a valid Access token (RS256, signed by one of the
team's keys, for this application's audience, not expired, optionally for an allowed e-mail)
gets a dashboard session without the password.

Configured from the process environment (config.py has no [admin] section yet):
    APPLIANCE_ADMIN_CF_ACCESS_TEAM      https://yourteam.cloudflareaccess.com
    APPLIANCE_ADMIN_CF_ACCESS_AUD       the application's Audience (AUD) tag
    APPLIANCE_ADMIN_CF_ACCESS_EMAILS    optional, comma separated: only these identities
The signing keys are fetched from <team>/cdn-cgi/access/certs (Cloudflare rotates them), kept
for an hour, and fetched again when a token names an unknown key. RSA verification is done
here with Python integers (PKCS#1 v1.5, SHA-256): it needs no crypto library, and only
verifies, which is the part that must be right and is short.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger(__name__)
SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
LEEWAY_S = 60
KEYS_TTL_S = 3600
REFETCH_MIN_S = 60          # unknown key ids trigger a fetch at most this often


class TokenRejected(ValueError):
    """The Access token is not valid; the message says why (logged, never shown)."""


def _loopback(url: str) -> bool:
    """Plain http is allowed only for a stand-in on this machine (tests)."""
    from urllib.parse import urlsplit

    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class RsaKey:
    n: int
    e: int

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, str]) -> RsaKey:
        return cls(int.from_bytes(b64url(jwk["n"]), "big"), int.from_bytes(b64url(jwk["e"]),
                                                                            "big"))

    def verify(self, message: bytes, signature: bytes) -> bool:
        k = (self.n.bit_length() + 7) // 8
        if len(signature) != k or k < 128:
            return False
        s = int.from_bytes(signature, "big")
        if s >= self.n:
            return False
        em = pow(s, self.e, self.n).to_bytes(k, "big")
        digest = SHA256_PREFIX + hashlib.sha256(message).digest()
        expected = b"\x00\x01" + b"\xff" * (k - len(digest) - 3) + b"\x00" + digest
        return hmac.compare_digest(em, expected)


def verify_token(token: str, keys: Mapping[str, RsaKey], audience: str, issuer: str,
                 now: float) -> dict[str, object]:
    """The token's claims, or TokenRejected."""
    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header = json.loads(b64url(head_b64))
        claims = json.loads(b64url(body_b64))
        signature = b64url(sig_b64)
    except (ValueError, TypeError) as exc:
        raise TokenRejected(f"malformed token: {exc}") from None
    if header.get("alg") != "RS256":
        raise TokenRejected(f"algorithm {header.get('alg')!r} is not RS256")
    key = keys.get(str(header.get("kid")))
    if key is None:
        raise TokenRejected("signed by an unknown key")
    if not key.verify(f"{head_b64}.{body_b64}".encode(), signature):
        raise TokenRejected("bad signature")
    aud = claims.get("aud")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        raise TokenRejected("for another application (aud)")
    if claims.get("iss") != issuer:
        raise TokenRejected("from another issuer")
    if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] + LEEWAY_S < now:
        raise TokenRejected("expired")
    if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] - LEEWAY_S > now:
        raise TokenRejected("not valid yet")
    return claims


@dataclass
class AccessVerifier:
    team: str                           # https://yourteam.cloudflareaccess.com
    audience: str
    emails: frozenset[str] = frozenset()
    clock: Callable[[], float] = time.time
    certs_url: str = ""
    _keys: dict[str, RsaKey] = field(default_factory=dict)
    _fetched_at: float = 0.0
    HEADER = "Cf-Access-Jwt-Assertion"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None,
                     clock: Callable[[], float] = time.time) -> AccessVerifier | None:
        env = os.environ if environ is None else environ
        team = env.get("APPLIANCE_ADMIN_CF_ACCESS_TEAM", "").strip().rstrip("/")
        aud = env.get("APPLIANCE_ADMIN_CF_ACCESS_AUD", "").strip()
        if not team or not aud:
            return None
        if team.startswith("http://") and not _loopback(team):
            log.error("admin: APPLIANCE_ADMIN_CF_ACCESS_TEAM must be an https:// URL; "
                      "Cloudflare Access sign-in is off")
            return None
        if not team.startswith(("https://", "http://")):
            team = "https://" + team
        emails = frozenset(e.strip().lower() for e in
                           env.get("APPLIANCE_ADMIN_CF_ACCESS_EMAILS", "").split(",") if e.strip())
        return cls(team, aud, emails, clock, certs_url=f"{team}/cdn-cgi/access/certs")

    async def _refresh(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.get(self.certs_url) as resp:
            resp.raise_for_status()
            body = await resp.json(content_type=None)
        self._keys = {str(k["kid"]): RsaKey.from_jwk(k) for k in body.get("keys", [])
                      if k.get("kty") == "RSA"}
        self._fetched_at = self.clock()

    async def identity(self, token: str | None) -> str | None:
        """The e-mail (or subject) of a valid token; None otherwise."""
        if not token:
            return None
        now = self.clock()
        try:
            kid = str(json.loads(b64url(token.split(".")[0])).get("kid"))
            age = now - self._fetched_at
            if age > KEYS_TTL_S or (kid not in self._keys and age > REFETCH_MIN_S):
                await self._refresh()
            claims = verify_token(token, self._keys, self.audience, self.team, now)
        except (TokenRejected, ValueError, KeyError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("admin: Cloudflare Access token refused: %s", exc)
            return None
        who = str(claims.get("email") or claims.get("sub") or "")
        if self.emails and who.lower() not in self.emails:
            log.warning("admin: Cloudflare Access identity not in the allowed list")
            return None
        return who or "cloudflare-access"
