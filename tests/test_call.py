"""Whole calls through the real server over a real WebSocket, driven by the Twilio stand-in
(`appliance simulate`'s code), with the real Silero VAD, faster-whisper and Piper code on the
generated test models and the real google-genai client against the fake Gemini server.

The test Whisper model always hears "hello i would like an appointment" (it is deterministic,
not trained), so these tests check the plumbing and what crosses the wire, not recognition.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import pytest

from appliance.simulate import CallerTurn, simulate_call
from appliance.server import running
from tests.support import calls
from tests.support.calls import REPLY, db_rows, open_ticket, turn
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.fakes.gemini_server import Call, Reply
from tests.support.gather import last_reply, plays, whole_reply

gemini = calls.gemini      # the Gemini stand-in answering REPLY


# Gemini's replies are scripted in order: a speculative request on a half-heard turn (the
# caller resumes after a pause) would take the first of them, so these calls reply only to the
# finished turn. Speculation has its own tests (test_call_speculation.py).
@pytest.fixture
async def server(make_settings, gemini):
    settings = make_settings(
        extra=f"[gemini]\nbase_url = {gemini.base_url}\n"
              "[call]\nsilence_prompt_s = 30\nspeculative_replies = false\n",
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
    async with running(settings) as srv:
        assert srv.services.health()["ready"], srv.services.health()
        yield srv


async def call(srv, turns, **kw):
    return await simulate_call(srv.url, PUBLIC_URL, TOKEN, turns, **kw)


def media_times(result) -> list[float]:
    return [e["_at"] for e in result.events if e["event"] == "media"]


async def test_a_call_greets_answers_after_end_of_speech_and_stores_everything(server, gemini
                                                                               ) -> None:
    result = await call(server, [turn("en_book.wav")])
    root = ET.fromstring(result.twiml)
    stream = root.find("./Connect/Stream")
    assert stream.get("url").startswith("wss://receptionist.example.com/ws/")
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params["caller"] == "+15550001111" and len(params["token"]) >= 20

    (t,) = result.turns
    greeting_frames = [x for x in media_times(result) if x < t.end_of_speech_at]
    assert len(greeting_frames) > 20, "the greeting arrives before the caller speaks"
    assert t.first_reply_frame_at is not None and t.first_reply_frame_at > t.end_of_speech_at
    assert t.first_mark_at is not None and t.first_mark_at > t.first_reply_frame_at
    assert result.sent_marks and set(result.sent_marks) <= set(result.echoed_marks)

    (row,) = db_rows(server, "SELECT * FROM call_turns")
    assert row["transcript"] == "hello i would like an appointment"
    assert row["reply_text"] == REPLY and row["heard_text"] == REPLY and not row["interrupted"]
    assert row["model"].startswith("gemini:")
    for name in ("endpoint_wait_ms", "stt_ms", "llm_ttft_ms", "tts_first_audio_ms",
                 "turn_latency_ms", "heard_latency_ms", "end_of_speech_ms"):
        assert row[name] is not None, name
    assert 0 < row["turn_latency_ms"] < row["heard_latency_ms"]
    (c,) = db_rows(server, "SELECT * FROM calls")
    assert c["caller"] == "+15550001111" and c["ended_at"] and c["outcome"] == "caller_hung_up"
    turns = db_rows(server, "SELECT role, text FROM turns ORDER BY id")
    assert [(r["role"], r["text"]) for r in turns] == [
        ("assistant", "Hello, you have reached Sunrise Appliances."),
        ("user", "hello i would like an appointment"), ("assistant", REPLY)]
    (request,) = gemini.turn_requests
    assert request.user_texts()[-1].endswith("hello i would like an appointment")


async def test_silence_and_noise_get_no_reply(server, gemini) -> None:
    result = await call(server, [turn("silence_5s.wav"), turn("noise_5s.wav")],
                        reply_timeout_s=1.5)
    assert all(t.first_reply_frame_at is None for t in result.turns)
    assert db_rows(server, "SELECT * FROM call_turns") == []
    assert gemini.turn_requests == []


async def test_barge_in_clears_and_the_history_keeps_only_what_was_heard(server, gemini
                                                                         ) -> None:
    long_reply = ("Our shop sells and repairs washing machines, fridges and ovens. "
                  "We are open from Sunday to Thursday, nine to six. On Friday we close at one. "
                  "Deliveries across Tel Aviv take two days. Installation is free with every "
                  "machine. Repairs come with a ninety day warranty. Is there anything else?")
    gemini.script(Reply(text=long_reply, ttft_s=0.05), Reply(text="Sure, tell me more.",
                                                             ttft_s=0.05))
    result = await call(server, [turn("en_book.wav"),
                                 turn("en_long.wav", barge_in_after_s=1.0)])
    interrupted = result.turns[1]
    assert interrupted.clear_at is not None, "clear went out when the caller spoke over the bot"
    rows = db_rows(server, "SELECT * FROM call_turns ORDER BY turn_index")
    first = rows[0]
    assert first["interrupted"] == 1
    assert first["reply_text"] == long_reply
    assert 0 < len(first["heard_text"]) < len(long_reply)
    assert long_reply.startswith(first["heard_text"].split()[0])
    history = db_rows(server, "SELECT role, text, interrupted FROM turns WHERE role='assistant'"
                              " AND call_id IS NOT NULL ORDER BY id")[1:]   # after the greeting
    assert history[0]["text"] == first["heard_text"] and history[0]["interrupted"] == 1
    assert len(rows) == 2, "the interruption became the caller's next turn"


async def test_dtmf_operator_key_transfers_with_dial(server) -> None:
    result = await call(server, [CallerTurn(Path("-"), dtmf="0")])
    assert result.closed_by_server
    dial = ET.fromstring(result.action_twiml).find("Dial")
    assert dial is not None and dial.text == "+15550009999"
    (c,) = db_rows(server, "SELECT outcome, transfer_to FROM calls")
    assert (c["outcome"], c["transfer_to"]) == ("transferred", "+15550009999")


async def test_asking_for_a_person_ends_with_dial_to_the_operator(server, gemini) -> None:
    gemini.script(Reply(text="Let me connect you.", calls=(Call("transfer_to_human", {}),),
                        ttft_s=0.05),
                  Reply(text="Connecting you now.", ttft_s=0.01))
    result = await call(server, [turn("en_human.wav")])
    assert result.closed_by_server
    dial = ET.fromstring(result.action_twiml).find("Dial")
    assert dial is not None and dial.text == "+15550009999"


async def test_forged_or_unsigned_requests_are_refused(server) -> None:
    async with aiohttp.ClientSession() as http:
        ws_url = server.url.replace("http", "ws") + "/ws/" + "n" * 24
        for headers in ({}, {"X-Twilio-Signature": "Zm9yZ2Vk"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(ws_url, headers=headers)
            assert info.value.status == 403
        async with http.post(server.url + "/voice", data={"CallSid": "CA1", "From": "+1555"},
                             headers={"X-Twilio-Signature": "Zm9yZ2Vk"}) as resp:
            assert resp.status == 403
    assert db_rows(server, "SELECT * FROM calls") == []


async def test_a_stream_without_a_valid_token_is_closed_before_any_work(server) -> None:
    ticket = await open_ticket(server, "CA" + "1" * 32)     # a real one-time stream URL
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ticket.local_ws, headers=ticket.upgrade_headers) as ws:
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call"}))
            await ws.send_str(json.dumps({
                "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
                "start": {"streamSid": "MZ1", "callSid": "CA" + "1" * 32, "accountSid": "AC1",
                          "tracks": ["inbound"], "customParameters": {"token": "guess"},
                          "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                          "channels": 1}}}))
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1008


async def test_bad_frames_mid_call_do_not_disturb_the_call(server, gemini) -> None:
    """Malformed JSON, unknown events, bad base64 and binary frames are ignored."""
    # send the junk on the real socket right after start, through a wrapped send
    original_send = aiohttp.ClientWebSocketResponse.send_str
    sent_junk = []

    async def send_str(self, data, *a, **k):
        await original_send(self, data, *a, **k)
        if '"event": "start"' in data and not sent_junk:
            for junk in ("{not json", json.dumps({"event": "party"}),
                         json.dumps({"event": "media", "sequenceNumber": "2", "streamSid": "MZ",
                                     "media": {"payload": "***", "timestamp": "0",
                                               "chunk": "1"}})):
                await original_send(self, junk)
                sent_junk.append(junk)
            await self.send_bytes(b"\x00\x01binary")

    aiohttp.ClientWebSocketResponse.send_str = send_str
    try:
        result = await call(server, [turn("en_yes.wav")])
    finally:
        aiohttp.ClientWebSocketResponse.send_str = original_send
    assert len(sent_junk) == 3
    assert result.turns[0].first_reply_frame_at is not None
    (c,) = db_rows(server, "SELECT outcome FROM calls")
    assert c["outcome"] == "caller_hung_up"


async def test_server_shutdown_closes_the_call_record(make_settings, gemini) -> None:
    settings = make_settings(extra=f"[gemini]\nbase_url = {gemini.base_url}\n",
                             environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "k"})
    async with running(settings) as srv:
        task = asyncio.create_task(call(srv, [turn("en_long.wav")]))
        for _ in range(100):
            await asyncio.sleep(0.1)
            if srv.services.calls.active_count():
                break
        assert srv.services.calls.active_count() == 1
    result = await asyncio.wait_for(task, 30)
    assert result.closed_by_server
    (c,) = db_rows(srv, "SELECT outcome, ended_at FROM calls")
    assert c["ended_at"] is not None and c["outcome"] == "failed"


@pytest.fixture
async def backchannel_server(tmp_path, test_models, gemini):
    """The same appliance, but its (deterministic) Whisper hears every utterance as "mhm"."""
    from tests.support import models as tm
    from tests.support.fixtures import write_ini
    from appliance.config import load_settings

    whisper = tm.make_whisper(tmp_path / "mhm", phrase="mhm")
    ini = write_ini(tmp_path / "config.ini", test_models,
                    f"[stt]\nmodel = {whisper}\n[gemini]\nbase_url = {gemini.base_url}\n"
                    "[call]\nspeculative_replies = false\n")   # one request per turn, counted
    settings = load_settings(ini, environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "k"})
    async with running(settings) as srv:
        yield srv


async def test_a_backchannel_over_the_bot_pauses_then_resumes_the_reply(backchannel_server,
                                                                        gemini) -> None:
    reply = ("We repair washing machines, fridges and ovens. A technician visit costs two "
             "hundred shekels. Repairs come with a ninety day warranty. Shall I book one?")
    gemini.default = Reply(text=reply, ttft_s=0.05)
    result = await call(backchannel_server, [turn("en_book.wav"),
                                             turn("en_yes.wav", barge_in_after_s=1.0)])
    assert result.turns[1].clear_at is not None, "the bot paused while the caller spoke"
    rows = db_rows(backchannel_server, "SELECT * FROM call_turns")
    assert len(rows) == 1, "a backchannel is not a turn"
    assert not rows[0]["interrupted"] and rows[0]["heard_text"] == reply
    assert len(gemini.turn_requests) == 1
    # audio came again after the clear: the reply resumed
    clear_at = result.turns[1].clear_at
    assert [t for t in media_times(result) if t > clear_at + 0.3]


async def test_silence_gets_a_prompt_then_a_polite_hang_up(make_settings, gemini) -> None:
    settings = make_settings(
        extra=f"[gemini]\nbase_url = {gemini.base_url}\n"
              "[call]\nsilence_prompt_s = 2\nsilence_hangup_after = 1\n",
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "k"})
    async with running(settings) as srv:
        result = await call(srv, [turn("silence_5s.wav")], reply_timeout_s=0.5, tail_s=12)
        assert result.closed_by_server, "the bot hung up"
        assert "<Hangup" in (result.action_twiml or "")
        (c,) = db_rows(srv, "SELECT outcome, next_action FROM calls")
    assert (c["outcome"], c["next_action"]) == ("completed", "hangup")
    # greeting, "are you still there?", goodbye: three separate pieces of speech
    assert len(result.sent_marks) >= 3


async def test_a_crashing_stage_ends_the_call_with_the_fallback_not_dead_air(server) -> None:
    async def broken(*args, **kwargs):
        raise RuntimeError("speech recognition exploded")

    server.services.stt.transcribe_async = broken
    result = await call(server, [turn("en_yes.wav")])
    assert result.closed_by_server
    dial = ET.fromstring(result.action_twiml).find("Dial")
    assert dial is not None and dial.text == "+15550009999"
    (c,) = db_rows(server, "SELECT outcome, next_action, ended_at FROM calls")
    assert (c["outcome"], c["next_action"]) == ("failed", "fallback") and c["ended_at"]


async def _signed_post(srv, path: str, data: dict) -> tuple[int, str]:
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + path, data)
    async with aiohttp.ClientSession() as http:
        async with http.post(srv.url + path, data=data,
                             headers={"X-Twilio-Signature": signature}) as resp:
            return resp.status, await resp.text()


async def test_gather_mode_answers_with_the_same_engine(make_settings, gemini) -> None:
    settings = make_settings(
        extra=f"[server]\ndefault_voice_mode = gather\n[gemini]\nbase_url = {gemini.base_url}\n",
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "k"})
    call_params = {"CallSid": "CA" + "1" * 32, "From": "+15550001111", "To": "+15550002222"}
    async with running(settings) as srv:
        status, body = await _signed_post(srv, "/voice", call_params)
        assert status == 200
        gather = ET.fromstring(body).find("Gather")
        assert gather.get("input") == "speech"
        assert gather.get("action") == PUBLIC_URL + "/respond"
        bodies = await whole_reply(srv, call_params, "Are you open?")
        assert ET.fromstring(bodies[-1]).find("Gather") is not None
        assert [u for b in bodies for u in plays(b)], "the reply is <Play>ed in our voice"
        assert await last_reply(srv, call_params["CallSid"]) == REPLY
        # /voice-stream still streams in gather mode
        status, body = await _signed_post(srv, "/voice-stream",
                                          {**call_params, "CallSid": "CA" + "2" * 32})
        assert ET.fromstring(body).find("Connect/Stream") is not None
        rows = db_rows(srv, "SELECT role, channel, text FROM turns ORDER BY id")
    assert [(r["role"], r["channel"]) for r in rows] == [("user", "gather"),
                                                         ("assistant", "gather")]
    assert gemini.turn_requests[-1].user_texts()[-1].endswith("Are you open?")
