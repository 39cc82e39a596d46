"""Issue 13 item 3, the product decision (conversation/privacy.py) through the real server: a
customer told us things on WhatsApp; a call from the same number (caller ID only) is greeted as
a returning customer by first name, but the Gemini request (seen at the fake Gemini server)
carries none of the WhatsApp conversation nor the surname; after the caller reads back the
one-time code sent to that number, the next requests carry the whole history and name."""

from __future__ import annotations

import re

import aiohttp

from appliance.server import running
from tests.fakes.gemini_server import Call, FakeGemini, Recorded, Reply
from tests.fakes.twilio_rest import FakeTwilio
from tests.test_messaging_restart import wait_until
from tests.test_messaging_harness import (ACCOUNT_SID, AUTH_TOKEN, WA_FROM, inbound_params,
                                          new_sid, sign)

PHONE = "+15550001111"
SECRET = "my alarm code is 4321"


async def post(srv, path: str, data: dict[str, str]) -> str:
    async with aiohttp.ClientSession() as http, http.post(
            srv.url + path, data=data, headers={"X-Twilio-Signature": sign(path, data)}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text()


def seen(request: Recorded) -> str:
    return str(request.body)


async def test_an_unconfirmed_caller_hears_no_history_until_the_step_up(
        make_settings, fake_twilio: FakeTwilio) -> None:
    async with FakeGemini() as gemini:
        settings = make_settings(
            extra=(f"[server]\ndefault_voice_mode = gather\n[gemini]\nbase_url = "
                   f"{gemini.base_url}\n[appointments]\nenabled = true\n"
                   f"[twilio]\naccount_sid = {ACCOUNT_SID}\napi_base_url = {fake_twilio.base_url}\n"
                   f"[messaging]\nwhatsapp_from = {WA_FROM}\nsms_from = +15550003333\n"),
            environ={"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "GEMINI_API_KEY": "k"})
        call = {"CallSid": "CA" + "c" * 32, "AccountSid": ACCOUNT_SID, "From": PHONE,
                "To": "+15550002222"}
        async with running(settings) as srv:
            # 1. on WhatsApp: the customer gives their name and a personal detail
            gemini.script(Reply(calls=(Call("update_customer", {"name": "Dana Levi"}),)),
                          Reply(text="Thanks Dana, noted."))
            await post(srv, "/message", inbound_params(
                new_sid(), "whatsapp:" + PHONE, f"Hi, I'm Dana Levi and {SECRET}"))
            await wait_until(lambda: fake_twilio.sent_to("whatsapp:" + PHONE))

            # 2. a call from the same number, caller ID only
            await post(srv, "/voice", call)
            gemini.script(Reply(text="Hello Dana, how can I help?"))
            await post(srv, "/respond", {**call, "SpeechResult": "What did I tell you?"})
            unconfirmed = seen(gemini.turn_requests[-1])
            # 3. the step-up: a code by message, read back
            gemini.script(Reply(calls=(Call("send_verification_code", {}),)),
                          Reply(text="I sent you a code."))
            await post(srv, "/respond", {**call, "SpeechResult": "Can you check who I am?"})
            after_send = seen(gemini.turn_requests[-1])
            await wait_until(lambda: any("code is" in m.body for m in fake_twilio.messages))
            code = re.search(r"code is (\d{6})", " ".join(
                m.body for m in fake_twilio.messages)).group(1)
            gemini.script(Reply(calls=(Call("check_verification_code", {"code": code}),)),
                          Reply(text="Thank you, you're confirmed."))
            await post(srv, "/respond", {**call, "SpeechResult": f"It's {code}"})
            gemini.script(Reply(text="You told us your alarm code."))
            await post(srv, "/respond", {**call, "SpeechResult": "So what did I tell you?"})
            confirmed = seen(gemini.turn_requests[-1])

    for before in (unconfirmed, after_send):
        assert "4321" not in before and "Levi" not in before and "Thanks Dana" not in before
        assert "first name Dana" in before and "returning customer" in before
        assert "identity is not confirmed" in before
    assert "What did I tell you?" in unconfirmed          # this call's own words are there
    assert SECRET in confirmed and "Dana Levi" in confirmed and "Thanks Dana, noted." in confirmed
    assert "identity is not confirmed" not in confirmed
    assert confirmed.index(SECRET) < confirmed.index("What did I tell you?")   # history first
