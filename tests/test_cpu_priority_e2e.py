"""Issue 13 item 9 through the real server: four long WhatsApp voice notes (posted to /message,
downloaded from the Twilio media stand-in, 65 s each) are waiting for speech recognition while
a simulated call's turn comes in; the call's Whisper jobs start before any queued note window,
and every note is still transcribed and answered afterwards. Generated test models; the test
reads the order of the scheduler's job events, not the clock.

The worst case is set up on purpose: one worker (`[stt] workers = 1`), busy with another job
when the notes and the turn arrive, so everything queues and the order is the scheduler's.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import wave

import aiohttp
import numpy as np

from appliance.call.events import CallEvent, TurnTranscribed
from appliance.sched.cpu import JobEvent, Lane
from appliance.server import running
from appliance.simulate import CallerTurn, simulate_call
from tests.support.fixtures import AUDIO_DIR, PUBLIC_URL
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.messaging import wait_until
from tests.support.messaging import (ACCOUNT_SID, AUTH_TOKEN, WA_FROM, inbound_params,
                                          new_sid, sign)
from tests.support.voice_notes import ogg_opus

MANIFEST = {e["file"]: e for e in json.loads((AUDIO_DIR / "manifest.json").read_text())}
SENDERS = [f"whatsapp:+97250123456{i}" for i in range(4)]
NOTE_S = 65     # three 30 s windows each


def long_note(tmp_path) -> bytes:
    """en_book.wav repeated to NOTE_S seconds, as WhatsApp's OGG/Opus."""
    with wave.open(str(AUDIO_DIR / "en_book.wav")) as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16)
    reps = -(-NOTE_S * rate // len(pcm))
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.tile(pcm, reps)[:NOTE_S * rate].tobytes())
    return ogg_opus(path)


async def post_note(url: str, sender: str, media_url: str) -> None:
    params = inbound_params(new_sid(), sender, media=((media_url, "audio/ogg"),))
    async with aiohttp.ClientSession() as http, http.post(
            url + "/message", data=params,
            headers={"X-Twilio-Signature": sign("/message", params)}) as resp:
        assert resp.status == 200, await resp.text()


def overtaken(jobs: list[JobEvent]) -> list[tuple[int, int]]:
    """(live job, note job) pairs where a note job started while the live job was waiting."""
    out = []
    for q in (e for e in jobs if e.lane is Lane.LIVE and e.kind == "queued"):
        started = next(i for i, e in enumerate(jobs) if e.seq == q.seq and e.kind == "started")
        queued_at = jobs.index(q)
        out += [(q.seq, e.seq) for e in jobs[queued_at:started]
                if e.lane is Lane.NOTE and e.kind == "started"]
    return out


async def test_a_call_turn_is_transcribed_before_queued_voice_notes(
        make_settings, tmp_path, fake_twilio: FakeTwilio) -> None:
    note = long_note(tmp_path)
    async with FakeGemini() as gemini:
        gemini.default = Reply(text="Thanks, noted.")
        settings = make_settings(
            extra=(f"[gemini]\nbase_url = {gemini.base_url}\n[call]\nsilence_prompt_s = 30\n"
                   f"[twilio]\naccount_sid = {ACCOUNT_SID}\napi_base_url = {fake_twilio.base_url}\n"
                   f"[messaging]\nwhatsapp_from = {WA_FROM}\n[stt]\nworkers = 1\n"),
            environ={"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "GEMINI_API_KEY": "k"})
        async with running(settings) as srv:
            cpu = srv.services.cpu
            jobs: list[JobEvent] = []
            cpu.subscribe(jobs.append)
            heard: list[CallEvent] = []
            srv.services.call_events.subscribe(heard.append)
            gate = threading.Event()
            busy = cpu.submit(Lane.LIVE, gate.wait, 60)        # another turn holds the worker
            for sender in SENDERS:
                await post_note(srv.url, sender, fake_twilio.add_media("audio/ogg", note))
            await wait_until(lambda: cpu.queued()["note"] == len(SENDERS), timeout=60)

            turn = CallerTurn(AUDIO_DIR / "en_book.wav",
                              speech_end_s=MANIFEST["en_book.wav"]["speech_end_s"])
            call = asyncio.create_task(simulate_call(
                srv.url, PUBLIC_URL, AUTH_TOKEN, [turn], caller="+15550001111",
                account_sid=ACCOUNT_SID, reply_timeout_s=120))
            await wait_until(lambda: cpu.queued()["live"] >= 1, timeout=60)   # the turn waits
            assert cpu.queued()["note"] == len(SENDERS)
            gate.set()
            busy.result(timeout=10)
            result = await call
            await wait_until(lambda: all(fake_twilio.sent_to(s) for s in SENDERS), timeout=240)

    transcribed = [e for e in heard if isinstance(e, TurnTranscribed)]
    assert transcribed and "appointment" in transcribed[0].text, transcribed
    assert result.turns and result.turns[0].first_reply_frame_at is not None
    live = [e for e in jobs if e.lane is Lane.LIVE and e.kind == "queued"]
    assert len(live) >= 1 and overtaken(jobs) == []
    first_live_start = next(i for i, e in enumerate(jobs)
                            if e.lane is Lane.LIVE and e.kind == "started")
    first_note_start = next(i for i, e in enumerate(jobs)
                            if e.lane is Lane.NOTE and e.kind == "started")
    assert first_live_start < first_note_start      # the call went first ...
    notes_done = [e for e in jobs if e.lane is Lane.NOTE and e.kind == "done"]
    assert len(notes_done) == 3 * len(SENDERS)      # ... and every note window ran after
    conn = sqlite3.connect(settings.storage.database)
    try:
        rows = conn.execute("SELECT status, duration_ms, transcript FROM message_media").fetchall()
    finally:
        conn.close()
    assert len(rows) == len(SENDERS)
    for status, duration_ms, text in rows:
        assert status == "transcribed" and abs(duration_ms - NOTE_S * 1000) < 200
        assert text.count("appointment") == 3, text    # one per 30 s window
