"""Issue 15, <Gather> mode, through the real server (webhooks signed as Twilio signs them, the
real engine, Piper on the generated test voice, the fake Gemini server):

- the greeting and every reply piece are <Play> clips of our voice, served once as mu-law WAV
  from signed, expiring URLs; the first piece comes before the reply is finished and the rest
  follow through /continue; <Say> only in a language without a local voice;
- <Gather language> is the caller's (their record's) or the business's, with the KB's product
  names as hints and a partialResultCallback; partial results start the reply early, and
  nothing of it is stored or done before the final SpeechResult releases it;
- empty results reprompt, and after [call] gather_empty_max the call ends politely;
- /check_ai answers a reply that took long; the status callback closes every record.
"""

from __future__ import annotations

import asyncio
import sqlite3
import struct
import xml.etree.ElementTree as ET

import aiohttp
import pytest

from appliance.call import gather as gather_module
from appliance.server import running
from tests.support.fixtures import PUBLIC_URL
from tests.support.fakes.gemini_server import Call, FakeGemini, Reply
from tests.support.calls import call_params, db_rows as rows, open_ticket, post, settings_for, sid
from tests.support.gather import plays, whole_reply

LONG = ("We are open from nine to six, Sunday to Thursday. On Friday we close at one. "
        "Is there anything else I can do for you?")
GATHER_MODE = "[server]\ndefault_voice_mode = gather\n"


@pytest.fixture
async def gemini():
    async with FakeGemini() as fake:
        fake.default = Reply(text="Sure.", ttft_s=0.02)
        yield fake


def dump(srv) -> dict[str, list[tuple]]:
    """Every row of every plain table (the KB's virtual tables need sqlite-vec to be read)."""
    conn = sqlite3.connect(srv.services.settings.storage.database)
    try:
        names = [n for (n,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE "
            "'CREATE VIRTUAL%' AND name NOT LIKE 'kb_%'")]
        return {n: conn.execute(f'SELECT * FROM "{n}"').fetchall() for n in names}
    finally:
        conn.close()


async def fetch(srv, url: str) -> tuple[int, str, bytes]:
    assert url.startswith(PUBLIC_URL), url
    async with aiohttp.ClientSession() as http, \
            http.get(srv.url + url[len(PUBLIC_URL):]) as resp:
        return resp.status, resp.content_type, await resp.read()


def ulaw_of(wav: bytes) -> bytes:
    """The mu-law samples of a WAVE file the server made (format 7, 8 kHz, mono)."""
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    fmt, rate = struct.unpack("<HHI", wav[20:28])[0], struct.unpack("<I", wav[24:28])[0]
    assert (fmt, rate) == (7, 8000)
    at = wav.index(b"data")
    (size,) = struct.unpack("<I", wav[at + 4:at + 8])
    return wav[at + 8:at + 8 + size]


async def test_a_gather_call_is_answered_with_piper_clips_and_closed_by_its_status(
        make_settings, gemini) -> None:
    gemini.default = Reply(text=LONG, ttft_s=0.05, tokens_per_s=40)
    async with running(settings_for(make_settings, gemini, GATHER_MODE)) as srv:
        for _ in range(100):            # the KB is ingested in the background at start-up
            if rows(srv, "SELECT 1 FROM kb_passages WHERE row_number IS NOT NULL LIMIT 1"):
                break
            await asyncio.sleep(0.1)
        params = call_params(sid(1))
        status, body = await post(srv, "/voice", params)
        gather = ET.fromstring(body).find("Gather")
        assert (gather.get("input"), gather.get("speechTimeout")) == ("speech", "auto")
        assert gather.get("language") == "en-US"
        assert gather.get("partialResultCallback") == PUBLIC_URL + "/gather-partial"
        assert "Bosch Serie 6 WAU28P00IL 9 kg washing machine" in gather.get("hints")
        (greeting,) = plays(body)
        status, kind, wav = await fetch(srv, greeting)
        assert (status, kind) == (200, "audio/wav") and len(ulaw_of(wav)) > 800
        assert (await fetch(srv, greeting))[0] == 404, "a clip is served once"

        bodies = await whole_reply(srv, params, "When are you open?")
        assert len(bodies) >= 2, "the first piece comes before the reply is finished"
        first = ET.fromstring(bodies[0])
        assert [e.tag for e in first] == ["Play", "Redirect"]
        assert first.find("Redirect").text == PUBLIC_URL + "/continue"
        assert ET.fromstring(bodies[-1]).find("Gather") is not None
        clips = [url for body in bodies for url in plays(body)]
        assert len(clips) >= 3                  # one per sentence
        for url in clips:
            status, kind, wav = await fetch(srv, url)
            assert status == 200 and kind == "audio/wav" and ulaw_of(wav)
        assert not any(e.tag == "Say" for b in bodies for e in ET.fromstring(b).iter())
        turns = rows(srv, "SELECT role, channel, text FROM turns ORDER BY id")
        assert [(t["role"], t["channel"]) for t in turns] == [("user", "gather"),
                                                              ("assistant", "gather")]
        assert turns[1]["text"] == LONG
        (c,) = rows(srv, "SELECT * FROM calls")
        assert (c["mode"], c["outcome"], c["ended_at"]) == ("gather", "in_progress", None)

        status, _ = await post(srv, "/call-status", {**params, "CallStatus": "completed",
                                                     "CallDuration": "42"})
        assert status == 204
        (c,) = rows(srv, "SELECT * FROM calls")
        assert c["outcome"] == "caller_hung_up" and c["ended_at"]
        assert (c["duration_s"], c["twilio_status"]) == (42, "completed")
        for _ in range(100):            # and the owner's summary of the <Gather> call
            if rows(srv, "SELECT 1 FROM owner_summaries WHERE call_id = ?", c["id"]):
                break
            await asyncio.sleep(0.05)
        assert rows(srv, "SELECT 1 FROM owner_summaries WHERE call_id = ?", c["id"])
        # the replay of the same signed callback is refused and changes nothing
        before = dump(srv)
        status, _ = await post(srv, "/call-status", {**params, "CallStatus": "completed",
                                                     "CallDuration": "42"})
        assert status == 403 and dump(srv) == before


async def test_forged_expired_and_replayed_clip_urls_are_refused_and_write_nothing(
        make_settings, gemini) -> None:
    async with running(settings_for(make_settings, gemini, GATHER_MODE)) as srv:
        params = call_params(sid(2))
        _, body = await post(srv, "/voice", params)
        (url,) = plays(body)
        before = dump(srv)
        forged = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
        assert (await fetch(srv, forged))[0] == 403
        other_call = url.replace(sid(2), sid(3))
        assert (await fetch(srv, other_call))[0] == 403
        assert (await fetch(srv, url))[0] == 200
        assert (await fetch(srv, url))[0] == 404            # replayed
        assert dump(srv) == before


async def test_an_expired_clip_url_is_refused(make_settings, gemini, monkeypatch) -> None:
    from appliance.call import clips as clips_module

    monkeypatch.setattr(clips_module, "CLIP_TTL_S", 1.0)
    async with running(settings_for(make_settings, gemini, GATHER_MODE)) as srv:
        _, body = await post(srv, "/voice", call_params(sid(4)))
        (url,) = plays(body)
        await asyncio.sleep(2.2)
        before = dump(srv)
        status, _, _ = await fetch(srv, url)
        assert status == 403 and dump(srv) == before


async def test_partial_results_start_the_reply_but_nothing_happens_before_the_final(
        make_settings, gemini) -> None:
    gemini.script(Reply(calls=(Call("update_customer", {"name": "Dana Levi"}),), ttft_s=0.05),
                  Reply(text="Nice to meet you, Dana.", ttft_s=0.05))
    async with running(settings_for(make_settings, gemini, GATHER_MODE)) as srv:
        params = call_params(sid(5), "+15550005555")
        await post(srv, "/voice", params)
        for text in ("my name", "my name is Dana", "My name is Dana Levi"):
            status, _ = await post(srv, "/gather-partial", {
                **params, "UnstableSpeechResult": text, "SequenceNumber": text[:2]})
            assert status == 204
        for _ in range(100):
            if gemini.turn_requests:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        # the reply started on the partial result; its tool call waits for the final one
        assert len(gemini.turn_requests) == 1
        assert [tuple(r) for r in rows(srv, "SELECT name FROM customers WHERE phone = "
                                            "'+15550005555'")] in ([], [(None,)]), \
            "no tool runs before the final result"
        assert rows(srv, "SELECT * FROM turns") == []
        bodies = await whole_reply(srv, params, "My name is Dana Levi.")
        # released, not redone: the one request, then the round with the tool's result
        assert len(gemini.turn_requests) == 2
        assert gemini.turn_requests[0].user_texts()[-1].endswith("My name is Dana Levi")
        assert [tuple(r) for r in rows(srv, "SELECT name FROM customers WHERE phone = "
                                            "'+15550005555'")] == [("Dana Levi",)]
        texts = [r["text"] for r in rows(srv, "SELECT text FROM turns WHERE role != 'tool' "
                                              "ORDER BY id")]
        assert [t.rstrip(".") for t in texts] == ["My name is Dana Levi", "Nice to meet you, Dana"]
        assert bodies
        stats = (await gather_health(srv))["speculative"]
        assert (stats["starts"], stats["released"], stats["cancelled"]) == (1, 1, 0)


async def gather_health(srv) -> dict:
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/healthz") as resp:
        return (await resp.json())["gather"]


async def test_a_partial_result_that_differs_from_the_final_is_dropped(make_settings, gemini
                                                                       ) -> None:
    gemini.script(Reply(text="We have three washing machines.", ttft_s=0.05),
                  Reply(text="We open at nine.", ttft_s=0.05))
    async with running(settings_for(make_settings, gemini, GATHER_MODE)) as srv:
        params = call_params(sid(6))
        await post(srv, "/voice", params)
        await post(srv, "/gather-partial", {**params, "UnstableSpeechResult": "washing"})
        for _ in range(100):
            if gemini.turn_requests:
                break
            await asyncio.sleep(0.05)
        await whole_reply(srv, params, "When do you open?")
        assert len(gemini.turn_requests) == 2
        texts = [r["text"] for r in rows(srv, "SELECT text FROM turns ORDER BY id")]
        assert texts == ["When do you open?", "We open at nine."]
        assert (await gather_health(srv))["speculative"]["cancelled"] == 1


async def test_empty_results_reprompt_then_end_the_call_politely(make_settings, gemini) -> None:
    settings = settings_for(make_settings, gemini, GATHER_MODE + "[call]\ngather_empty_max = 2\n")
    async with running(settings) as srv:
        params = call_params(sid(7))
        await post(srv, "/voice", params)
        status, body = await post(srv, "/respond", {**params, "SpeechResult": ""})
        gather = ET.fromstring(body).find("Gather")
        assert status == 200 and gather.get("action") == PUBLIC_URL + "/respond?empty=1"
        (reprompt,) = plays(body)
        assert (await fetch(srv, reprompt))[0] == 200
        status, body = await post(srv, "/respond?empty=1", {**params, "SpeechResult": ""})
        root = ET.fromstring(body)
        assert root.find("Gather") is None and root.find("Hangup") is not None
        assert len(plays(body)) == 1
        (c,) = rows(srv, "SELECT outcome, ended_at FROM calls")
        assert c["outcome"] == "no_speech" and c["ended_at"]
        assert gemini.turn_requests == []


async def test_check_ai_answers_a_reply_that_took_long(make_settings, gemini, monkeypatch
                                                      ) -> None:
    monkeypatch.setattr(gather_module, "GATHER_DEADLINE_S", 0.2)
    gemini.default = Reply(text="Yes, we deliver on Sunday.", ttft_s=0.8)
    async with running(settings_for(make_settings, gemini, GATHER_MODE)) as srv:
        params = call_params(sid(8))
        await post(srv, "/voice", params)
        status, body = await post(srv, "/respond", {**params, "SpeechResult": "Sunday?"})
        root = ET.fromstring(body)
        assert root.find("Redirect").text == PUBLIC_URL + "/check_ai"
        assert len(plays(body)) == 1                # "one moment", in our voice
        await asyncio.sleep(1.0)
        status, body = await post(srv, "/check_ai", params)
        gather = ET.fromstring(body).find("Gather")
        assert status == 200 and gather is not None
        (answer,) = plays(body)
        assert (await fetch(srv, answer))[0] == 200
        # nothing in progress: /check_ai listens again
        status, body = await post(srv, "/check_ai", {**params, "Again": "1"})
        assert ET.fromstring(body).find("Gather") is not None


async def test_say_only_for_a_language_without_a_local_voice(make_settings, gemini) -> None:
    gemini.default = Reply(text="Конечно.", ttft_s=0.02)
    async with running(settings_for(make_settings, gemini, GATHER_MODE)) as srv:
        memory = srv.services.engine.memory
        customer = await memory.customer("+15550006666")
        await memory.update_customer(customer.id, language="ru")
        params = call_params(sid(9), "+15550006666")
        _, body = await post(srv, "/voice", params)
        gather = ET.fromstring(body).find("Gather")
        assert gather.get("language") == "ru-RU"
        say = gather.find("Say")
        assert say is not None and say.get("language") == "ru-RU" and not plays(body)
        bodies = await whole_reply(srv, params, "Вы работаете?")
        said = [s.text for b in bodies for s in ET.fromstring(b).iter("Say")]
        assert said == ["Конечно."] and not any(plays(b) for b in bodies)


async def test_overflow_calls_get_gather_mode_with_piper_end_to_end(make_settings, gemini
                                                                    ) -> None:
    gemini.default = Reply(text="All good, how can I help?", ttft_s=0.02)
    settings = settings_for(make_settings, gemini, "[call]\nmax_concurrent = 1\n"
                                                   "overflow = gather\n")
    async with running(settings) as srv:
        streamed = await open_ticket(srv, sid(10), "+15550001010")
        assert streamed.token
        params = call_params(sid(11), "+15550001111")
        status, body = await post(srv, "/voice-stream", params)
        (greeting,) = plays(body)
        assert ET.fromstring(body).find("Gather") is not None
        assert (await fetch(srv, greeting))[0] == 200
        bodies = await whole_reply(srv, params, "Hello?")
        clips = [u for b in bodies for u in plays(b)]
        assert clips
        for url in clips:
            assert (await fetch(srv, url))[0] == 200
        modes = dict(tuple(r) for r in rows(srv, "SELECT call_sid, mode FROM calls"))
        assert modes == {sid(10): "stream", sid(11): "gather"}
        for call_sid in (sid(10), sid(11)):          # both records closed by the callback
            await post(srv, "/call-status", {**call_params(call_sid), "CallStatus": "completed",
                                             "CallDuration": "7"})
        assert {tuple(r) for r in rows(srv, "SELECT outcome, duration_s FROM calls WHERE "
                                            "ended_at IS NOT NULL")} == {("caller_hung_up", 7)}
        assert len(rows(srv, "SELECT * FROM calls WHERE ended_at IS NOT NULL")) == 2


async def test_a_forged_status_callback_is_refused(make_settings, gemini) -> None:
    async with running(settings_for(make_settings, gemini, GATHER_MODE)) as srv:
        params = call_params(sid(12))
        await post(srv, "/voice", params)
        before = dump(srv)
        async with aiohttp.ClientSession() as http, http.post(
                srv.url + "/call-status", data={**params, "CallStatus": "completed"},
                headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}) as resp:
            assert resp.status == 403
        assert dump(srv) == before


def test_the_clip_wav_is_a_standard_mulaw_wave_file(tmp_path) -> None:
    """Read back by a reader that is not ours (sox), when it is installed."""
    import shutil
    import subprocess

    from appliance.call.clips import ClipSigner, mulaw_wav

    ulaw = bytes(range(256)) * 31 + b"\x7f"          # an odd length: the data chunk is padded
    wav = mulaw_wav(ulaw)
    assert ulaw_of(wav) == ulaw and len(wav) % 2 == 0
    signer = ClipSigner(b"k" * 32)
    good = signer.sign("CA1", "clip", 100)
    assert signer.valid("CA1", "clip", 100, good)
    assert not signer.valid("CA2", "clip", 100, good) and not signer.valid("CA1", "clip", 101,
                                                                             good)
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    path = tmp_path / "clip.wav"
    path.write_bytes(wav)
    info = subprocess.run(["sox", "--i", str(path)], capture_output=True, text=True, check=True)
    assert "u-law" in info.stdout and "8000" in info.stdout
    assert f"{len(ulaw)} samples" in info.stdout
