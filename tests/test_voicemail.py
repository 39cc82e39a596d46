"""Voicemail through the real server: the operator does not answer, Twilio records the
caller (<Record> with a signed recordingStatusCallback), the appliance fetches the recording
from the Twilio REST stand-in, transcribes it with its own speech recognition and the owner's
summary e-mail (aiosmtpd) carries it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.server import running
from appliance.simulate import CallerTurn, simulate_call
from tests.support.fixtures import AUDIO_DIR, PUBLIC_URL, TOKEN
from tests.support import channels
from tests.support.actions import OWNER_EMAIL as OWNER
from tests.support.calls import db_rows
from tests.support.channels import body, mails, signed_post
from tests.support.messaging import ACCOUNT_SID

smtp, twilio = channels.smtp, channels.twilio


@pytest.fixture
async def server(make_settings, gemini, smtp, twilio):
    settings = make_settings(
        extra=f"[gemini]\nbase_url = {gemini.base_url}\n"
              "[call]\nsilence_prompt_s = 30\nvoicemail = true\n"
              f"[owner]\nemail = {OWNER}\n"
              f"[smtp]\nhost = 127.0.0.1\nport = {smtp.port}\nsender = bot@sunrise.example\n"
              "starttls = false\n"
              f"[twilio]\naccount_sid = {ACCOUNT_SID}\napi_base_url = {twilio.base_url}\n",
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
    async with running(settings) as srv:
        yield srv


async def test_an_unanswered_transfer_records_a_voicemail_for_the_summary(
        server, smtp, twilio) -> None:
    result = await simulate_call(server.url, PUBLIC_URL, TOKEN, [CallerTurn(Path("-"), dtmf="0")],
                                 account_sid=ACCOUNT_SID)
    assert ET.fromstring(result.action_twiml).find("Dial") is not None
    call = {"CallSid": result.call_sid, "AccountSid": ACCOUNT_SID, "From": "+15550001111",
            "To": "+15550002222"}
    twiml = await signed_post(server, "/dial-status", {**call, "DialCallStatus": "no-answer"})
    root = ET.fromstring(twiml)
    record = root.find("Record")
    assert record is not None and root.find("Say").text.startswith("Nobody can take your call")
    assert record.get("recordingStatusCallback") == PUBLIC_URL + "/voicemail/recording"
    assert record.get("action") == PUBLIC_URL + "/voicemail/done"
    assert record.get("finishOnKey") == "#"

    url = twilio.add_recording((AUDIO_DIR / "en_book.wav").read_bytes())
    await signed_post(server, "/voicemail/recording",
                      {**call, "RecordingSid": "RE" + "1" * 32, "RecordingUrl": url,
                       "RecordingStatus": "completed", "RecordingDuration": "3"})
    done = await signed_post(server, "/voicemail/done", {**call, "RecordingUrl": url})
    assert "<Hangup" in done

    (mail,) = await mails(smtp, 1, "Call from")
    text = body(mail)
    assert "Outcome: transfer not answered, voicemail left" in text
    assert 'Voicemail (3 s): "hello i would like an appointment"' in text
    (m,) = db_rows(server, "SELECT text FROM taken_messages")
    assert m["text"].startswith("Voicemail (3 s)")


async def test_a_recording_from_anywhere_but_twilio_is_not_fetched(server, smtp) -> None:
    result = await simulate_call(server.url, PUBLIC_URL, TOKEN, [CallerTurn(Path("-"), dtmf="0")],
                                 account_sid=ACCOUNT_SID)
    call = {"CallSid": result.call_sid, "AccountSid": ACCOUNT_SID}
    await signed_post(server, "/dial-status", {**call, "DialCallStatus": "busy"})
    await signed_post(server, "/voicemail/recording",
                      {**call, "RecordingUrl": "http://169.254.169.254/latest",
                       "RecordingStatus": "completed"})
    (mail,) = await mails(smtp, 1, "Call from")
    assert "could not be fetched or decoded: untrusted_url" in body(mail)


async def test_the_operator_key_out_of_hours_goes_to_voicemail(make_settings, gemini, smtp,
                                                               twilio) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    today = datetime.now(ZoneInfo("Asia/Jerusalem")).weekday()
    other_day = days[(today + 3) % 7]          # hours on another day only: closed now
    settings = make_settings(
        extra=f"[gemini]\nbase_url = {gemini.base_url}\n[call]\nvoicemail = true\n"
              f"[business]\ntransfer_hours = {other_day} 09:00-10:00\n"
              f"[twilio]\naccount_sid = {ACCOUNT_SID}\napi_base_url = {twilio.base_url}\n",
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
    async with running(settings) as srv:
        result = await simulate_call(srv.url, PUBLIC_URL, TOKEN,
                                     [CallerTurn(Path("-"), dtmf="0")], account_sid=ACCOUNT_SID)
        assert result.closed_by_server
        root = ET.fromstring(result.action_twiml)
        assert root.find("Record") is not None and root.find("Dial") is None
        (c,) = db_rows(srv, "SELECT outcome, next_action FROM calls")
    assert (c["outcome"], c["next_action"]) == ("completed", "voicemail")
