"""The fake Twilio REST server itself, reached through the real twilio library."""

from __future__ import annotations

from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException

from appliance.messaging.twilio_rest import make_client
from tests.support.fakes.twilio_rest import Fail, FakeTwilio
from tests.support.messaging import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM, WA_FROM, write_settings


# ----------------------------------------------------------------------------------------------
# The fake REST server, through the real library

async def test_real_client_creates_a_message_with_basic_auth(tmp_path: Path,
                                                             fake_twilio: FakeTwilio) -> None:
    settings = write_settings(tmp_path, fake_twilio.base_url)
    client = make_client(settings, timeout_s=2)
    assert client is not None
    try:
        msg = await client.messages.create_async(to="whatsapp:+972501234567", from_=WA_FROM,
                                                 body="hello")
        assert msg.sid.startswith("SM") and msg.status == "queued"
        page = await client.messages.page_async(to="whatsapp:+972501234567", from_=WA_FROM)
        assert [m.sid for m in page] == [msg.sid]
    finally:
        await client.http_client.close()
    (request,) = fake_twilio.creates()
    assert request.authorized
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.one("Body") == "hello" and request.one("From") == WA_FROM


async def test_fake_refuses_wrong_credentials_and_reports_scripted_errors(
        tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    settings = write_settings(tmp_path, fake_twilio.base_url)
    fake_twilio.auth_token = "another-token"
    client = make_client(settings, timeout_s=2)
    assert client is not None
    try:
        with pytest.raises(TwilioRestException) as info:
            await client.messages.create_async(to="+972501234567", from_=SMS_FROM, body="x")
        assert info.value.status == 401 and info.value.code == 20003
        fake_twilio.auth_token = AUTH_TOKEN
        fake_twilio.script(Fail(400, 21211, "Invalid 'To' Phone Number"))
        with pytest.raises(TwilioRestException) as info:
            await client.messages.create_async(to="+972501234567", from_=SMS_FROM, body="x")
        assert info.value.status == 400 and info.value.code == 21211
    finally:
        await client.http_client.close()
    assert fake_twilio.messages == []
