"""Issue 13, items 2 and 3 through the real server (<Gather> mode, the real engine and tools,
the fake Gemini server): two callers with a withheld number are two throw-away customers, the
second hears nothing of the first and cannot list appointments; StirVerstat is recorded."""

from __future__ import annotations

import sqlite3

import aiohttp

from appliance.server import running
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.fakes.gemini_server import Call, FakeGemini, Recorded, Reply
from tests.support.gather import last_reply, whole_reply


async def _post(srv, path: str, data: dict) -> str:
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + path, data)
    async with aiohttp.ClientSession() as http, http.post(srv.url + path, data=data,
                         headers={"X-Twilio-Signature": signature}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text()


async def _said(srv, params: dict, speech: str) -> str:
    """What the bot answered (its <Play> clips say the stored reply)."""
    await whole_reply(srv, params, speech)
    return await last_reply(srv, params["CallSid"])


async def test_withheld_callers_are_strangers_to_each_other(make_settings) -> None:
    async with FakeGemini() as gemini:
        settings = make_settings(
            extra=f"[server]\ndefault_voice_mode = gather\n[gemini]\nbase_url = "
                  f"{gemini.base_url}\n[appointments]\nenabled = true\n",
            environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "k"})
        a = {"CallSid": "CA" + "a" * 32, "From": "+266696687", "To": "+15550002222",
             "StirVerstat": "TN-Validation-Failed"}
        b = {**a, "CallSid": "CA" + "b" * 32, "StirVerstat": "TN-Validation-Passed-A"}
        async with running(settings) as srv:
            await _post(srv, "/voice", a)
            gemini.script(Reply(text="Got it, Dana."))
            assert await _said(srv, a, "I'm Dana, my alarm code is 4321.") == "Got it, Dana."

            await _post(srv, "/voice", b)
            gemini.script(Reply(calls=(Call("list_my_appointments", {}),)),
                          lambda r: Reply(text=str(r.function_responses()[-1]["response"])))
            said = await _said(srv, b, "My bookings?")
            assert "withheld" in said
            request: Recorded = gemini.turn_requests[-2]
            assert "4321" not in str(request.body) and "Dana" not in str(request.body)
            conn = sqlite3.connect(settings.storage.database)
            try:
                calls = conn.execute("SELECT c.call_sid, c.attestation, k.phone FROM calls c "
                                     "JOIN customers k ON k.id = c.customer_id "
                                     "ORDER BY c.id").fetchall()
            finally:
                conn.close()
    assert [(sid, att) for sid, att, _ in calls] == [
        (a["CallSid"], "TN-Validation-Failed"), (b["CallSid"], "TN-Validation-Passed-A")]
    assert calls[0][2] != calls[1][2] and all(p.startswith("anonymous:") for *_, p in calls)
