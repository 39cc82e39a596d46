"""Every channel alike, through the real server: the owner's summary e-mail (aiosmtpd on
loopback) for a streamed call says what the bot answered and which tools it ran; after an
unanswered transfer the summary says so and the message taken afterwards is in it; a WhatsApp
conversation is summarised once it goes quiet, once."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from appliance.server import running
from appliance.simulate import CallerTurn, _run_stream, simulate_call
from tests.support import channels
from tests.support.actions import OWNER_EMAIL as OWNER
from tests.support.calls import db_rows, turn
from tests.support.channels import body, mails, messaging_settings, signed_post
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.fakes.gemini_server import Call, Reply
from tests.support.messaging import ACCOUNT_SID, WA_FROM, inbound_params, new_sid, wait_until

smtp, twilio = channels.smtp, channels.twilio


# Gemini's replies are scripted in order: a speculative request on a half-heard turn (the
# caller resumes after a pause) would take the first of them, so these calls reply only to the
# finished turn. Speculation has its own tests (test_call_speculation.py).
@pytest.fixture
async def server(make_settings, gemini, smtp, twilio):
    settings = make_settings(
        extra=f"[gemini]\nbase_url = {gemini.base_url}\n[call]\nsilence_prompt_s = 30\nspeculative_replies = false\n"
              f"[owner]\nemail = {OWNER}\n"
              f"[smtp]\nhost = 127.0.0.1\nport = {smtp.port}\nsender = bot@sunrise.example\n"
              "starttls = false\n"
              f"[twilio]\naccount_sid = {ACCOUNT_SID}\napi_base_url = {twilio.base_url}\n"
              f"[messaging]\nwhatsapp_from = {WA_FROM}\n"
              "[notify]\nconversation_quiet_s = 2\n",
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
    async with running(settings) as srv:
        yield srv


async def test_a_call_summary_says_what_the_bot_answered_and_which_tools_ran(
        server, gemini, smtp) -> None:
    gemini.script(Reply(calls=(Call("update_customer", {"name": "Dana Levi"}),)),
                  Reply(text="Thank you Dana, which day suits you?", ttft_s=0.05))
    await simulate_call(server.url, PUBLIC_URL, TOKEN, [turn("en_book.wav")], tail_s=2,
                        account_sid=ACCOUNT_SID)
    (mail,) = await mails(smtp, 1, "Call from")
    text = body(mail)
    assert mail["To"] == OWNER
    assert '- "hello i would like an appointment"' in text
    assert 'What the bot answered:\n- "Thank you Dana, which day suits you?"' in text
    assert "- Tools run: update_customer" in text
    assert "Hello, you have reached" not in text.split("What the bot answered:")[1]


async def test_after_an_unanswered_transfer_the_message_reaches_the_summary(
        server, gemini, smtp) -> None:
    result = await simulate_call(server.url, PUBLIC_URL, TOKEN, [CallerTurn(Path("-"), dtmf="0")],
                                 account_sid=ACCOUNT_SID)
    assert ET.fromstring(result.action_twiml).find("Dial") is not None
    await asyncio.sleep(0.5)
    assert not [m for m in smtp.messages if "Call from" in m["Subject"]], \
        "no summary while the transfer rings"

    # Twilio: the operator did not answer; the call comes back to the bot.
    params = {"CallSid": result.call_sid, "AccountSid": ACCOUNT_SID, "From": "+15550001111",
              "To": "+15550002222", "DialCallStatus": "no-answer", "CallStatus": "in-progress"}
    twiml = await signed_post(server, "/dial-status", params)
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    assert stream is not None
    gemini.script(Reply(calls=(Call("take_message", {"message": "Call me back about my fridge",
                                                     "name": "Dana"}),)),
                  Reply(text="I'll pass that on. Goodbye!", ttft_s=0.05))
    await stream_again(server, result.call_sid, stream, [turn("en_book.wav")])

    (mail,) = await mails(smtp, 1, "Call from")
    text = body(mail)
    assert "Outcome: transfer not answered, then the caller hung up" in text
    assert "- Transfer not answered: no-answer" in text
    assert 'message (from Dana): "Call me back about my fridge"' in text
    assert "I'll pass that on. Goodbye!" in text
    (c,) = db_rows(server, "SELECT outcome FROM calls")
    assert c["outcome"] == "caller_hung_up"


async def stream_again(srv, call_sid: str, stream, turns) -> None:
    """Twilio opening the <Connect><Stream> the /dial-status answer asked for."""
    from urllib.parse import urlsplit

    from appliance.simulate import SimResult

    url = stream.get("url")
    custom = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    signature = RequestValidator(TOKEN).compute_signature(url, {})
    async with aiohttp.ClientSession() as http:
        ws_url = srv.url.replace("http", "ws", 1) + urlsplit(url).path
        async with http.ws_connect(ws_url, headers={"X-Twilio-Signature": signature}) as ws:
            await _run_stream(ws, SimResult(call_sid=call_sid, twiml=""), custom, call_sid,
                              turns, 20.0, 30.0, 2.0)


async def test_a_whatsapp_conversation_is_summarised_once_it_goes_quiet(
        server, gemini, smtp, twilio) -> None:
    gemini.script(Reply(text="Yes, we repair ovens. Shall I book a visit?"),
                  Reply(text="Booked in our notes: someone will call you."))
    sender = "whatsapp:+972501234567"
    await signed_post(server, "/message", inbound_params(new_sid(), sender, "Do you fix ovens?"))
    await wait_until(lambda: twilio.sent_to(sender), "the reply")
    (mail,) = await mails(smtp, 1, "WhatsApp from")
    text = body(mail)
    assert '- "Do you fix ovens?"' in text
    assert 'What the bot answered:\n- "Yes, we repair ovens. Shall I book a visit?"' in text
    await asyncio.sleep(3)
    assert len([m for m in smtp.messages if "WhatsApp from" in m["Subject"]]) == 1, \
        "summarised once"

    await signed_post(server, "/message", inbound_params(new_sid(), sender, "Please call me."))
    second = (await mails(smtp, 2, "WhatsApp from"))[1]
    assert '- "Please call me."' in body(second) and "Do you fix ovens?" not in body(second)


async def test_the_crm_is_asked_on_every_channel(make_settings, gemini, twilio, crm_server
                                                 ) -> None:
    url, seen = crm_server
    gemini.default = Reply(text="Hello Dana.", ttft_s=0.01)
    settings = messaging_settings(make_settings, gemini, twilio, f"[crm]\nurl_template = {url}\n")
    async with running(settings) as srv:
        sender = "whatsapp:+972501234567"
        await signed_post(srv, "/message", inbound_params(new_sid(), sender, "Hi"))
        await wait_until(lambda: twilio.sent_to(sender), "the reply")
        call = {"CallSid": "CA" + "3" * 32, "AccountSid": ACCOUNT_SID, "From": "+972509990000",
                "To": "+15550002222"}
        await signed_post(srv, "/respond", {**call, "SpeechResult": "Are you open?"})
        (dana,) = db_rows(srv, "SELECT name, language, gender FROM customers "
                               "WHERE phone = '+972501234567'")
        requests = gemini.turn_requests
    assert (dana["name"], dana["language"], dana["gender"]) == ("Dana Levi", "he", "f")
    assert len(seen) == 2, "WhatsApp and the gather call both asked the CRM"
    assert "Dana Levi" in requests[0].system
