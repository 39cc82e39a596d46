"""Issue 13, items 8 and 10, through the real server: how many calls are let in, by whom, and
that nothing Twilio signed once can be played back.

- beyond [call] max_concurrent a call goes to [call] overflow (operator, gather or busy), also
  when many arrive at once; one caller is limited to caller_max_calls per window;
- while the service is stopping, <Gather> calls get the fallback as streamed calls do;
- the <Stream url> carries a one-time nonce: a replayed upgrade, a second ticket for a live or
  ended call, and a byte-identical replay of /voice-stream or /dial-status are all refused;
- with [twilio] account_sid set, a voice webhook without that AccountSid is refused.
"""

from __future__ import annotations

import asyncio
import sqlite3
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import aiohttp
import pytest

from appliance.runtime import Component
from appliance.server import running
from appliance.simulate import simulate_call
from tests.support.calls import SIGN, call_params, open_ticket, post, settings_for, sid
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.fakes.gemini_server import FakeGemini, Reply


def outcomes(srv) -> dict[str, str]:
    conn = sqlite3.connect(srv.services.settings.storage.database)
    try:
        return dict(conn.execute("SELECT call_sid, outcome FROM calls").fetchall())
    finally:
        conn.close()


@pytest.fixture
async def gemini():
    async with FakeGemini() as fake:
        fake.default = Reply(text="Sure.", ttft_s=0.02)
        yield fake


@pytest.mark.parametrize("overflow", ["busy", "operator", "gather"])
async def test_calls_beyond_max_concurrent_overflow_even_when_they_arrive_at_once(
        make_settings, gemini, overflow) -> None:
    settings = settings_for(make_settings, gemini,
                            f"[call]\nmax_concurrent = 2\noverflow = {overflow}\n")
    async with running(settings) as srv:
        tickets = await asyncio.gather(*(open_ticket(srv, sid(i), f"+1555000{i:04d}")
                                         for i in range(6)))
        streamed = [t for t in tickets if t.token]
        refused = [t for t in tickets if not t.token]
        assert len(streamed) == 2 and len(refused) == 4
        for t in refused:
            root = ET.fromstring(t.twiml)
            if overflow == "busy":
                assert "lines are busy" in root.find("Say").text
                assert root.find("Hangup") is not None
            elif overflow == "operator":
                assert root.find("Dial").text == "+15550009999"
            else:
                assert root.find("Gather").get("input") == "speech"
        if overflow == "busy":
            assert sorted(outcomes(srv).values()).count("busy") == 4
        # the two admitted calls may stream; no third stream gets in on a spent nonce
        async with aiohttp.ClientSession() as http:
            first = streamed[0]
            async with http.ws_connect(first.local_ws, headers=first.upgrade_headers):
                with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                    await http.ws_connect(first.local_ws, headers=first.upgrade_headers)
                assert info.value.status == 403


async def test_one_caller_is_limited_to_caller_max_calls_per_window(make_settings, gemini
                                                                    ) -> None:
    settings = settings_for(make_settings, gemini,
                            "[call]\ncaller_max_calls = 2\ncaller_window_s = 600\n")
    async with running(settings) as srv:
        flooder = [await open_ticket(srv, sid(i), "+15557770000") for i in range(4)]
        assert [bool(t.token) for t in flooder] == [True, True, False, False]
        assert "lines are busy" in flooder[2].twiml
        other = await open_ticket(srv, sid(9), "+15558880000")
        assert other.token, "another caller still gets through"
        assert list(outcomes(srv).values()).count("rate_limited") == 2


async def test_gather_calls_get_the_fallback_while_the_service_stops(make_settings, gemini
                                                                     ) -> None:
    settings = settings_for(make_settings, gemini, "[server]\ndefault_voice_mode = gather\n")
    async with running(settings) as srv:
        status, body = await post(srv, "/voice", call_params(sid(1)))
        assert status == 200 and ET.fromstring(body).find("Gather") is not None
        srv.services.runtime.components["service"] = Component(
            "service", False, "shutting down: new calls get the fallback", 0, True)
        status, body = await post(srv, "/voice", call_params(sid(2)))
        root = ET.fromstring(body)
        assert status == 200 and root.find("Gather") is None
        assert root.find("Dial").text == "+15550009999"


async def test_replays_and_second_tickets_are_refused(make_settings, gemini) -> None:
    settings = settings_for(make_settings, gemini)
    async with running(settings) as srv:
        params = call_params(sid(1))
        assert (await post(srv, "/voice-stream", params))[0] == 200
        status, _ = await post(srv, "/voice-stream", params)        # byte-identical replay
        assert status == 403
        # a differently signed request for the same, still ticketed call: no second token
        again = await open_ticket(srv, sid(1), CallStatus="in-progress")
        assert again.status == 409 and not again.token
        # a whole call; afterwards its SID gets no new stream token
        result = await simulate_call(srv.url, PUBLIC_URL, TOKEN, [], caller="+15550004444",
                                     greeting_timeout_s=20)
        assert result.turns == [] and "/ws/" in result.twiml
        await asyncio.sleep(0.2)
        ended = await open_ticket(srv, result.call_sid, "+15550004444",
                                  CallStatus="in-progress")
        assert ended.status == 409 and not ended.token
        # the same upgrade (URL + signature) again: the nonce was spent
        stream = ET.fromstring(result.twiml).find("./Connect/Stream").get("url")
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(srv.url.replace("http", "ws") + urlsplit(stream).path,
                                      headers={"X-Twilio-Signature":
                                               SIGN.compute_signature(stream, {})})
            assert info.value.status == 403
        # /dial-status: answered once; the replay is refused
        dial = {**call_params(result.call_sid, "+15550004444"), "DialCallStatus": "completed"}
        assert (await post(srv, "/dial-status", dial))[0] == 200
        assert (await post(srv, "/dial-status", dial))[0] == 403


async def test_a_voice_webhook_without_our_account_sid_is_refused(make_settings, gemini
                                                                  ) -> None:
    settings = settings_for(make_settings, gemini)
    async with running(settings) as srv:
        params = call_params(sid(3))
        del params["AccountSid"]
        assert (await post(srv, "/voice", params))[0] == 403
        assert outcomes(srv) == {}
