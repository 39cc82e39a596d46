"""Cloudflare Access in front of the dashboard: a valid Access token (RS256, the team's key
served by a loopback stand-in for <team>/cdn-cgi/access/certs) opens a session without the
password; a token for another application, expired, badly signed, for someone not allowed, or
with another algorithm does not."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time

import aiohttp
import pytest
from aiohttp import web

from appliance.admin.cfaccess import SHA256_PREFIX, RsaKey, TokenRejected, verify_token
from appliance.server import running
from tests.support.admin import AdminClient

AUD = "aud-0123456789"
rng = random.Random(14)


def _probable_prime(n: int) -> bool:
    if n % 2 == 0:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(24):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (1 << (bits - 1)) | 1
        if all(candidate % p for p in (3, 5, 7, 11, 13, 17, 19, 23)) and \
                _probable_prime(candidate):
            return candidate


class TestKey:
    """An RSA key made here (no crypto library), 1024 bits: enough for a test."""

    def __init__(self, kid: str) -> None:
        self.kid, self.e = kid, 65537
        while True:
            p, q = _prime(512), _prime(512)
            phi = (p - 1) * (q - 1)
            if p != q and phi % self.e:
                break
        self.n, self.d = p * q, pow(self.e, -1, phi)

    def jwk(self) -> dict[str, str]:
        def b64(i: int) -> str:
            raw = i.to_bytes((i.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"kid": self.kid, "kty": "RSA", "alg": "RS256", "n": b64(self.n),
                "e": b64(self.e)}

    def sign(self, message: bytes) -> bytes:
        k = (self.n.bit_length() + 7) // 8
        digest = SHA256_PREFIX + hashlib.sha256(message).digest()
        em = b"\x00\x01" + b"\xff" * (k - len(digest) - 3) + b"\x00" + digest
        return pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(k, "big")


def b64j(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def token(key: TestKey, issuer: str, *, aud: str = AUD, exp_in: float = 300,
          email: str = "owner@example.com", alg: str = "RS256", kid: str | None = None,
          signer: TestKey | None = None) -> str:
    head = b64j({"alg": alg, "kid": kid or key.kid, "typ": "JWT"})
    body = b64j({"aud": [aud], "iss": issuer, "exp": time.time() + exp_in,
                 "iat": time.time(), "email": email, "sub": "user-1"})
    sig = (signer or key).sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


@pytest.fixture(scope="module")
def keys() -> tuple[TestKey, TestKey]:
    return TestKey("k1"), TestKey("k2")


def test_rs256_verification_refuses_each_way_a_token_can_be_wrong(keys) -> None:
    good, other = keys
    known = {good.kid: RsaKey.from_jwk(good.jwk())}
    issuer, now = "https://team.cloudflareaccess.com", time.time()
    claims = verify_token(token(good, issuer), known, AUD, issuer, now)
    assert claims["email"] == "owner@example.com"
    for bad, why in [(token(good, issuer, aud="other-app"), "another application"),
                     (token(good, issuer, exp_in=-600), "expired"),
                     (token(good, issuer, signer=other), "bad signature"),
                     (token(good, issuer, alg="HS256"), "not RS256"),
                     (token(good, "https://evil.cloudflareaccess.com"), "another issuer"),
                     (token(other, issuer), "unknown key"),
                     ("not.a.token", "malformed")]:
        with pytest.raises(TokenRejected, match=why):
            verify_token(bad, known, AUD, issuer, now)


@pytest.fixture
async def certs(keys):
    good, _ = keys
    app = web.Application()
    fetched = []

    async def handler(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.json_response({"keys": [good.jwk()], "public_cert": {}})

    app.router.add_get("/cdn-cgi/access/certs", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", fetched
    await runner.cleanup()


async def test_a_valid_access_token_opens_the_dashboard(make_settings, monkeypatch, certs,
                                                        keys) -> None:
    team, fetched = certs
    good, other = keys
    monkeypatch.setenv("APPLIANCE_ADMIN_CF_ACCESS_TEAM", team)
    monkeypatch.setenv("APPLIANCE_ADMIN_CF_ACCESS_AUD", AUD)
    monkeypatch.setenv("APPLIANCE_ADMIN_CF_ACCESS_EMAILS", "owner@example.com")
    async with running(make_settings()) as srv, aiohttp.ClientSession() as http:
        client = AdminClient(srv.url, http)
        header = "Cf-Access-Jwt-Assertion"
        for bad in (token(good, team, aud="other"), token(good, team, exp_in=-600),
                    token(good, team, signer=other), token(good, team, email="x@example.com"),
                    token(good, team, alg="none")):
            client.headers[header] = bad
            assert (await client.get("/admin/calls"))[0] == 302
        assert fetched == ["/cdn-cgi/access/certs"]        # keys fetched once, then cached
        client.headers[header] = token(good, team)
        status, text, _ = await client.get("/admin/calls")
        assert status == 200 and "<h1>Calls</h1>" in text
        assert "appliance_admin" in client.cookies          # a session, HttpOnly like any other
        del client.headers[header]
        assert (await client.get("/admin/customers"))[0] == 200
