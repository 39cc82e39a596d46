"""A real call over real speech: the caller reads a phone number in groups with pauses, through
the real server with real Whisper tiny.en and the real smart-turn model (the rest on the test
models; Gemini is the loopback stand-in). The bot must not speak before the caller is done:
one turn, its first audio after the end of speech, and the turn model consulted.
Skips cleanly when the real weights are not available (bench/realmodels.py)."""

from __future__ import annotations

import sqlite3

from appliance.call.events import AudioSent, CallEvent, TurnDecided
from appliance.server import running
from appliance.simulate import CallerTurn, simulate_call
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.turn_replay import CLIPS, real_model, speech_clip as _clip, write_wav

REPLY = "Thank you, I have your number."


async def test_a_phone_number_read_in_groups_is_one_turn(make_settings, tmp_path) -> None:
    whisper, smart_turn = real_model("whisper-tiny.en"), real_model("smart-turn-v3.2")
    name, pieces, _ = CLIPS[0]
    assert name == "phone_groups"
    pcm, starts = _clip(name, pieces)
    speech_end_s = len(pcm) / 8000                 # the last group ends the clip
    path = tmp_path / "phone_groups.wav"
    write_wav(path, pcm, 8000)
    seen: list[CallEvent] = []
    async with FakeGemini() as gemini:
        gemini.default = Reply(text=REPLY, ttft_s=0.3)
        settings = make_settings(
            extra=(f"[gemini]\nbase_url = {gemini.base_url}\n"
                   f"[stt]\nmodel = {whisper}\nlanguages = en\n"
                   f"[call]\nsilence_prompt_s = 30\nturn_model = {smart_turn}\n"),
            environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
        async with running(settings) as srv:
            health = srv.services.health()
            assert health["ready"] and health["components"]["turn_model"]["ok"], health
            srv.services.call_events.subscribe(seen.append)
            result = await simulate_call(srv.url, PUBLIC_URL, TOKEN,
                                         [CallerTurn(path, speech_end_s=speech_end_s)],
                                         reply_timeout_s=10)
    (turn,) = result.turns
    assert turn.first_reply_frame_at is not None and turn.first_reply_frame_at > \
        turn.end_of_speech_at, "the bot answered only after the last group"
    decided = [e for e in seen if isinstance(e, TurnDecided)]
    assert len(decided) == 1, decided               # never committed between the groups
    (d,) = decided
    assert d.end_of_speech_ms - d.start_ms >= starts[-1], "the turn runs to the last group"
    greeting = min(e.reply_id for e in seen if isinstance(e, AudioSent))
    answer = [e for e in seen if isinstance(e, AudioSent) and e.reply_id != greeting]
    assert answer and min(e.at for e in answer) > d.at, "no bot audio before the commit"
    conn = sqlite3.connect(settings.storage.database)
    conn.row_factory = sqlite3.Row
    try:
        (row,) = conn.execute("SELECT * FROM call_turns").fetchall()
    finally:
        conn.close()
    # the words run to the last group ("052 881 3344"). Whisper tiny.en's digits vary with how
    # the audio was windowed: "334" for the last group, "800 81" for the middle one (a CI run),
    # and on the 30 s window it sometimes drops the last group: bench/results/turn_stt.md.
    # Recognition is not what this test checks; that the one transcript spans the groups is.
    digits = "".join(ch for ch in row["transcript"] if ch.isdigit())
    assert digits.startswith("052") and "33" in digits[6:] and len(digits) >= 9, \
        row["transcript"]
    assert row["model_p"] is not None and row["ended_by"], dict(row)
    assert row["reply_text"] == REPLY

