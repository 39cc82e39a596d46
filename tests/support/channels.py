"""What the every-channel tests share: the owner's mails as the SMTP stand-in received them,
webhooks signed as Twilio signs them, and the real server answering WhatsApp."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from tests.support.actions import FakeSmtp
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.messaging import ACCOUNT_SID, WA_FROM


@pytest.fixture
def smtp(smtp_server: FakeSmtp) -> FakeSmtp:
    return smtp_server


@pytest.fixture
def twilio(fake_twilio: FakeTwilio) -> FakeTwilio:
    return fake_twilio                       # the shared stand-in (tests/support/fixtures.py)


async def mails(smtp: FakeSmtp, n: int, subject: str = "", timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in smtp.messages if subject in m["Subject"]]
        if len(found) >= n:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {n} mails {subject!r}: {[m['Subject'] for m in smtp.messages]}")


def body(mail) -> str:
    return mail.get_content().replace("\r\n", "\n")


async def signed_post(srv, path: str, data: dict) -> str:
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + path, data)
    async with aiohttp.ClientSession() as http:
        async with http.post(srv.url + path, data=data,
                             headers={"X-Twilio-Signature": signature}) as resp:
            assert resp.status in (200, 204), await resp.text()
            return await resp.text()


def messaging_settings(make_settings, gemini, twilio, extra: str = ""):
    """The real server answering WhatsApp through the Twilio stand-in, Gemini faked."""
    return make_settings(
        extra=f"[gemini]\nbase_url = {gemini.base_url}\n"
              f"[twilio]\naccount_sid = {ACCOUNT_SID}\napi_base_url = {twilio.base_url}\n"
              f"[messaging]\nwhatsapp_from = {WA_FROM}\n" + extra,
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
