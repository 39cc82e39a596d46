"""A slow box: the pause's transcript comes after the turn was committed AND after the caller
went on. Through the real server (VAD, Whisper and Piper on the generated test models; Gemini
the loopback stand-in), with Whisper made slow: the reply to the first part must not be spoken
over the second; both parts are answered once, as one turn, after the caller finished.
Also: a reply dropped before any of it was sent leaves no empty answer behind.
"""

from __future__ import annotations

import time

import pytest

from appliance.call.events import AudioSent, CallEvent, ReplyStarted, SpeechStarted
from appliance.call.turns import turn_params
from appliance.server import running
from appliance.simulate import simulate_call
from appliance.stt.whisper import SpeechRecognizer
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.calls import (  # noqa: F401 - gemini: the Gemini stand-in fixture
    REPLY as ANSWER, gemini, paused_turn, rows)

STT_DELAY_S = 1.6


@pytest.fixture
def slow_whisper(monkeypatch):
    """The real recognizer, but every transcription finishes STT_DELAY_S later."""
    real = SpeechRecognizer.transcribe

    def slow(self, pcm, language_hint=None):
        time.sleep(STT_DELAY_S)
        return real(self, pcm, language_hint)

    monkeypatch.setattr(SpeechRecognizer, "transcribe", slow)


async def test_a_late_transcript_never_answers_over_the_caller(
        make_settings, gemini, slow_whisper, tmp_path) -> None:  # noqa: F811
    # commit after 500 ms of silence even without the words (transcript_wait_ms is low), so
    # the commit comes inside the 1.2 s pause and its words come after the caller went on
    settings = make_settings(
        extra=(f"[gemini]\nbase_url = {gemini.base_url}\n[call]\nsilence_prompt_s = 30\n"
               "turn_wait_ms = 500\ntranscript_wait_ms = 200\nturn_model = off\n"),
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
    seen: list[CallEvent] = []
    turn = paused_turn(tmp_path, 1.2)
    async with running(settings) as srv:
        srv.services.call_events.subscribe(seen.append)
        result = await simulate_call(srv.url, PUBLIC_URL, TOKEN, [turn], reply_timeout_s=20)
    db = settings.storage.database

    starts = [e for e in seen if isinstance(e, SpeechStarted)]
    assert len(starts) == 2, "the caller's two parts were heard as two runs of speech"
    greeting = {e.reply_id for e in seen if isinstance(e, AudioSent) and e.at < starts[0].at}
    replies = [e for e in seen if isinstance(e, ReplyStarted)]
    spoken = [e for e in seen if isinstance(e, AudioSent) and e.reply_id not in greeting]
    assert spoken, "the turn was answered"
    assert len(replies) == 1 and {e.reply_id for e in spoken} == {replies[0].reply_id}
    # on the Twilio side: the first reply frame came after the caller's last word
    (measured,) = result.turns
    assert measured.first_reply_frame_at is not None
    assert measured.first_reply_frame_at > measured.end_of_speech_at
    assert measured.clear_at is None, "no barge-in: the bot never spoke over the caller"
    # one turn in the record, with the caller's words of both parts and a real answer
    (turn_row,) = rows(db, "SELECT * FROM call_turns")
    assert turn_row["reply_text"] == ANSWER and not turn_row["interrupted"]
    user = rows(db, "SELECT text FROM turns WHERE role = 'user' ORDER BY id")
    assert len(user) == 1
    assert not rows(db, "SELECT id FROM turns WHERE role = 'assistant' AND text = ''")


def test_short_turn_waits_keep_the_wait_table_ordered(make_settings) -> None:
    """[call] turn_wait_ms below the built-in shorter waits (200 is allowed) must not break."""
    settings = make_settings(extra="[call]\nturn_wait_ms = 200\n")
    params = turn_params(settings.call)
    assert params.base_wait_ms == 200 and params.fast_wait_ms <= 200


def test_an_older_config_with_retired_call_keys_still_loads(make_settings, caplog) -> None:
    settings = make_settings(extra="[call]\nendpoint_wait_ms = 500\nendpoint_short_wait_ms = 250\n"
                                   "endpoint_long_wait_ms = 1200\n")
    assert settings.call.turn_wait_ms == 700
    assert "endpoint_wait_ms is no longer used" in caplog.text
    windowed = make_settings(extra="[call]\ncaller_pause_turns = 3\n")   # session 5's knob
    assert turn_params(windowed.call) == turn_params(settings.call)
    assert "caller_pause_turns is no longer used" in caplog.text
    with pytest.raises(Exception, match="unknown key"):
        make_settings(extra="[call]\nendpoint_wiat_ms = 500\n")   # a typo is still caught
