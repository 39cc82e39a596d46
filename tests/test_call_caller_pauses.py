"""The bot learns how long this caller pauses, on a real call: real server, real Whisper
tiny.en and the real smart-turn model (the rest on the test models; Gemini is the loopback
stand-in). The caller says a sentence, pauses a second and goes on; from then on a "Yes." that
would end after 200 ms waits at least that pause plus [call] caller_pause_margin_ms.
Skips cleanly when the real weights are not available (bench/realmodels.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.server import running
from appliance.simulate import simulate_call
from tests.support.calls import paused_turn, rows, turn
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.turn_replay import real_model

PAUSE_S = 1.0


async def _call(make_settings, tmp_path: Path, margin_ms: int) -> list[sqlite3.Row]:
    whisper, smart_turn = real_model("whisper-tiny.en"), real_model("smart-turn-v3.2")
    turns = [paused_turn(tmp_path, PAUSE_S), turn("en_yes.wav")]
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
    return rows(settings.storage.database, "SELECT * FROM call_turns ORDER BY id")


@pytest.mark.parametrize("margin_ms", [150, 0])
async def test_after_a_held_pause_the_next_answer_waits_for_this_caller(
        make_settings, tmp_path, margin_ms) -> None:
    found = await _call(make_settings, tmp_path, margin_ms)
    last = found[-1]
    assert last["transcript"].lower().startswith(("yes", "yeah")), [r["transcript"] for r in found]
    if margin_ms:
        # the caller went on after ~1 s (VAD windows shave a little off the silence)
        assert last["ended_by"] == "caller_pauses", dict(last)
        assert last["wait_ms"] >= 900 + margin_ms, dict(last)
    else:                                            # off: "Yes." ends as it always did
        assert last["ended_by"] != "caller_pauses" and last["wait_ms"] < 900, dict(last)
