"""Issue 13, item 13 and the webhook forgery set, through the real messaging and voice apps.

Bodies used to be parsed before the signature was looked at: a non-UTF-8 or multipart body
with any X-Twilio-Signature header gave a 500 and a traceback per request. Now: no signature
-> 403 before the body is read; not a small UTF-8 form -> 400/413; a signature that does not
match (wrong token, wrong URL, changed field), or a webhook for another account -> 403. Nothing
is written for any of them. (A replayed, correctly signed webhook is answered once: its
MessageSid is stored once - see test_messaging_webhooks.py; the voice webhooks' replay
cache is in test_call_admission.py.)
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import aiohttp

from appliance.server import running as running_server
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.messaging import (
    Harness,
    inbound_params,
    new_sid,
    sign,
)
from tests.support.messaging import nothing_written

CUSTOMER_WA = "whatsapp:+972501234567"


def _multipart(params: dict[str, str]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for key, value in params.items():
        form.add_field(key, value)
    form.add_field("file", b"\x00\x01binary", filename="x.bin",
                   content_type="application/octet-stream")
    return form


async def test_bodies_that_are_not_a_utf8_form_get_400_not_500(harness: Harness) -> None:
    params = inbound_params(new_sid(), CUSTOMER_WA, "hello")
    good = sign("/message", params)
    cases = [
        (b"Body=\xff\xfe&MessageSid=SM1", "application/x-www-form-urlencoded", 400),
        (b"Body=%FF%FE&MessageSid=SM1", "application/x-www-form-urlencoded", 400),
        (b'{"MessageSid": "SM1"}', "application/json", 400),
        (b"MessageSid=SM1", "text/plain", 400),
    ]
    for body, ctype, status in cases:
        resp = await harness.client.post("/message", data=body, headers={
            "X-Twilio-Signature": good, "Content-Type": ctype})
        assert resp.status == status, (body, resp.status, await resp.text())
    resp = await harness.client.post("/message", data=_multipart(params),
                                     headers={"X-Twilio-Signature": good})
    assert resp.status == 400
    # the same bodies unsigned: 403 before anything is read
    for body, ctype, _ in cases:
        resp = await harness.client.post("/message", data=body, headers={"Content-Type": ctype})
        assert resp.status == 403
    await harness.settle(2)
    assert nothing_written(harness)


async def test_oversized_without_content_length_is_refused(harness: Harness) -> None:
    params = inbound_params(new_sid(), CUSTOMER_WA, "hello")

    async def chunks():
        yield b"Body="
        for _ in range(40):
            yield b"x" * 4096

    resp = await harness.client.post("/message", data=chunks(), headers={
        "X-Twilio-Signature": sign("/message", params),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 413
    assert nothing_written(harness)


async def test_a_webhook_for_another_account_is_refused(harness: Harness) -> None:
    params = {**inbound_params(new_sid(), CUSTOMER_WA, "hello"), "AccountSid": "AC" + "9" * 32}
    resp = await harness.post("/message", params)        # correctly signed with our token
    assert resp.status == 403
    await harness.settle(2)
    assert nothing_written(harness)


async def test_the_status_callback_is_guarded_the_same_way(harness: Harness) -> None:
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered"}
    for body, headers in [
            (b"MessageStatus=\xff", {"X-Twilio-Signature": sign("/message-status", params),
                                     "Content-Type": "application/x-www-form-urlencoded"}),
            (b"MessageStatus=delivered", {"Content-Type": "application/x-www-form-urlencoded"})]:
        resp = await harness.client.post("/message-status", data=body, headers=headers)
        assert resp.status in (400, 403)
    assert nothing_written(harness)


async def test_the_voice_webhook_refuses_forgeries_and_records_no_call(make_settings) -> None:
    from twilio.request_validator import RequestValidator

    settings = make_settings(extra="[twilio]\naccount_sid = AC" + "0" * 32 + "\n",
                             environ={"TWILIO_AUTH_TOKEN": TOKEN})
    params = {"CallSid": "CA" + "1" * 32, "AccountSid": "AC" + "0" * 32, "From": "+15550001111",
              "To": "+15550002222"}
    good = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + "/voice", params)
    other = RequestValidator("another-token").compute_signature(PUBLIC_URL + "/voice", params)
    wrong_url = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + "/respond", params)
    async with running_server(settings) as srv, aiohttp.ClientSession() as http:
        async def post(data, headers) -> int:
            async with http.post(srv.url + "/voice", data=data, headers=headers) as resp:
                await resp.read()
                return resp.status

        form = "application/x-www-form-urlencoded"
        assert await post(params, {}) == 403                                   # unsigned
        assert await post(params, {"X-Twilio-Signature": other}) == 403        # wrong token
        assert await post(params, {"X-Twilio-Signature": wrong_url}) == 403    # wrong URL
        assert await post({**params, "From": "+15550003333"},
                          {"X-Twilio-Signature": good}) == 403                 # changed field
        assert await post(b"CallSid=\xff\xfe", {"X-Twilio-Signature": good,
                                                "Content-Type": form}) == 400  # not UTF-8
        assert await post(_multipart(params), {"X-Twilio-Signature": good}) == 400
        assert await post(b"x=" + b"y" * 70_000, {"X-Twilio-Signature": good,
                                                  "Content-Type": form}) == 413  # oversized
        assert await post({**params, "AccountSid": "AC" + "9" * 32}, {
            "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(
                PUBLIC_URL + "/voice", {**params, "AccountSid": "AC" + "9" * 32})}) == 403
        unaccounted = {k: v for k, v in params.items() if k != "AccountSid"}
        assert await post(unaccounted, {"X-Twilio-Signature": RequestValidator(
            TOKEN).compute_signature(PUBLIC_URL + "/voice", unaccounted)}) == 403
        calls = await srv.services.db.fetchall("SELECT call_sid FROM calls")
        assert calls == []
        async with http.post(srv.url + "/voice", data=params,
                             headers={"X-Twilio-Signature": good}) as resp:
            assert resp.status == 200                                          # the real one
            assert ET.fromstring(await resp.text()).tag == "Response"
