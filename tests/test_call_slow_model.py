"""A slow model's first words are spoken before its first sentence is complete.

Through the real server (VAD, Whisper and Piper on the generated test models; the real
google-genai client against the loopback Gemini stand-in, which streams one long sentence two
words at a time at ~10 tokens a second, the pace of a local model on 2 cores): the first piece
Piper speaks is the words that had arrived after the slow-model wait (tts/first_clause.py), not
the whole sentence, and every word of the reply is still spoken, once, in order.
"""

from __future__ import annotations

from appliance.call.events import AudioSent, CallEvent, SpeechStarted
from appliance.server import running
from appliance.simulate import simulate_call
from tests.support.calls import gemini, rows, turn  # noqa: F401 - gemini: the stand-in fixture
from tests.support.fakes.gemini_server import Reply
from tests.support.fixtures import PUBLIC_URL, TOKEN

SENTENCE = "We are open from nine in the morning to six in the evening on weekdays."


async def test_a_slow_models_first_words_are_spoken_before_its_sentence_ends(
        make_settings, gemini) -> None:  # noqa: F811
    gemini.default = Reply(text=SENTENCE, ttft_s=0.05, words_per_chunk=2, tokens_per_s=10)
    settings = make_settings(
        extra=(f"[gemini]\nbase_url = {gemini.base_url}\n"
               "[call]\nsilence_prompt_s = 30\nspeculative_replies = false\n"),
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
    seen: list[CallEvent] = []
    async with running(settings) as srv:
        srv.services.call_events.subscribe(seen.append)
        await simulate_call(srv.url, PUBLIC_URL, TOKEN, [turn("en_book.wav")],
                            reply_timeout_s=20)

    speech_at = next(e.at for e in seen if isinstance(e, SpeechStarted))
    pieces = [e.text for e in seen if isinstance(e, AudioSent) and e.at > speech_at]
    assert pieces, "the turn was answered"
    first = pieces[0]
    assert SENTENCE.startswith(first) and len(first.split()) >= 3, pieces
    assert first != SENTENCE, "the first piece waited for the sentence's end"
    assert " ".join(pieces) == SENTENCE
    (row,) = rows(settings.storage.database, "SELECT reply_text FROM call_turns")
    assert row["reply_text"] == SENTENCE
