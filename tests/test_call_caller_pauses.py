"""The bot learns how long this caller pauses, on a real call: real server, real Whisper
tiny.en and the real smart-turn model (the rest on the test models; Gemini is the loopback
stand-in). The caller says a sentence, pauses a second and goes on; from then on a "Yes." that
would end after 200 ms waits at least that pause plus [call] caller_pause_margin_ms.
Skips cleanly when the real weights are not available (bench/realmodels.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from appliance.server import running
from appliance.simulate import CallerTurn, simulate_call
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.fixtures import AUDIO_DIR, PUBLIC_URL, TOKEN
from tests.support.turn_replay import read_wav, real_model, write_wav

MANIFEST = {e["file"]: e for e in json.loads((AUDIO_DIR / "manifest.json").read_text())}
PAUSE_S = 1.0


def _speech(name: str) -> tuple[np.ndarray, int]:
    pcm, rate = read_wav(AUDIO_DIR / name)
    entry = MANIFEST[name]
    return pcm[int(entry["speech_start_s"] * rate):int(entry["speech_end_s"] * rate)], rate


def _turn(path: Path, *parts: np.ndarray, rate: int = 8000) -> CallerTurn:
    lead, tail = np.zeros(rate // 2, np.int16), np.zeros(rate, np.int16)
    pcm = np.concatenate([lead, *parts])
    write_wav(path, np.concatenate([pcm, tail]), rate)
    return CallerTurn(path, speech_end_s=len(pcm) / rate)


async def _call(make_settings, tmp_path: Path, margin_ms: int) -> list[sqlite3.Row]:
    whisper, smart_turn = real_model("whisper-tiny.en"), real_model("smart-turn-v3.2")
    book, rate = _speech("en_book.wav")
    yes, _ = _speech("en_yes.wav")
    gap = np.zeros(int(PAUSE_S * rate), np.int16)
    turns = [_turn(tmp_path / f"paused{margin_ms}.wav", book, gap, book),
             _turn(tmp_path / f"yes{margin_ms}.wav", yes)]
    async with FakeGemini() as gemini:
        gemini.default = Reply(text="Sure. Shall I book that for you?", ttft_s=0.1)
        settings = make_settings(
            extra=(f"[gemini]\nbase_url = {gemini.base_url}\n"
                   f"[stt]\nmodel = {whisper}\nlanguages = en\n"
                   f"[call]\nsilence_prompt_s = 30\nturn_model = {smart_turn}\n"
                   f"caller_pause_margin_ms = {margin_ms}\n"),
            environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
        async with running(settings) as srv:
            await simulate_call(srv.url, PUBLIC_URL, TOKEN, turns, reply_timeout_s=10)
    conn = sqlite3.connect(settings.storage.database)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM call_turns ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("margin_ms", [150, 0])
async def test_after_a_held_pause_the_next_answer_waits_for_this_caller(
        make_settings, tmp_path, margin_ms) -> None:
    rows = await _call(make_settings, tmp_path, margin_ms)
    last = rows[-1]
    assert last["transcript"].lower().startswith(("yes", "yeah")), [r["transcript"] for r in rows]
    if margin_ms:
        # the caller went on after ~1 s (VAD windows shave a little off the silence)
        assert last["ended_by"] == "caller_pauses", dict(last)
        assert last["wait_ms"] >= 900 + margin_ms, dict(last)
    else:                                            # off: "Yes." ends as it always did
        assert last["ended_by"] != "caller_pauses" and last["wait_ms"] < 900, dict(last)
