"""Speculative replies on a real call (the real server, VAD, Whisper and Piper on the generated
test models, the real engine and tools; Gemini is the loopback stand-in): a reply started in the
caller's pause never runs a tool and never reaches the caller unless the turn is committed.

The caller says a sentence, pauses 2 s (longer than the 160 ms Pause, shorter than the 2.6 s
commit wait set here, so the attempt surely got as far as asking Gemini on a loaded machine,
where one transcription takes ~1 s),
then says it again. Every request without a tool result asks to book, so the
cancelled speculative attempts ask for the booking too; only the released reply may book.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from appliance.call.events import (AudioSent, CallEvent, ReplyStarted, SpeechStarted,
                                   TurnCompleted, TurnDecided)
from appliance.server import running
from appliance.simulate import simulate_call
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.fakes.gemini_server import Call, FakeGemini, Recorded, Reply
from tests.support.calls import paused_turn, rows

BOOKED = "You are booked for tomorrow at ten. Anything else?"
HOLD = "Let me book that for you."


def tomorrow_ten() -> str:
    day = datetime.now(ZoneInfo("Asia/Jerusalem")).date() + timedelta(days=1)
    return f"{day.isoformat()}T10:00"


@pytest.fixture
async def gemini():
    start = tomorrow_ten()

    def answer(request: Recorded) -> Reply:
        if request.function_responses():
            return Reply(text=BOOKED, ttft_s=0.05)
        return Reply(text=HOLD, calls=(Call("book_appointment", {"start": start}),),
                     ttft_s=0.05)

    async with FakeGemini() as fake:
        fake.default = answer
        yield fake


async def test_a_cancelled_speculative_reply_never_books_and_is_never_heard(
        make_settings, gemini, tmp_path) -> None:
    settings = make_settings(
        extra=(f"[gemini]\nbase_url = {gemini.base_url}\n[call]\nsilence_prompt_s = 30\n"
               "turn_wait_ms = 2600\n"
               f"[appointments]\nhours = mon-sun 08:00-20:00\n"),
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
    seen: list[CallEvent] = []
    committed_wall: list[datetime] = []

    def watch(event: CallEvent) -> None:
        seen.append(event)
        if isinstance(event, TurnDecided):
            committed_wall.append(datetime.now(timezone.utc))

    async with running(settings) as srv:
        srv.services.call_events.subscribe(watch)
        result = await simulate_call(srv.url, PUBLIC_URL, TOKEN,
                                     [paused_turn(tmp_path, 2.0)], reply_timeout_s=15)
    db = settings.storage.database

    (turn,) = rows(db, "SELECT * FROM call_turns")
    assert turn["speculative_cancelled"] >= 1, "the caller went on: an attempt was cancelled"
    assert turn["speculative_starts"] >= 2 and turn["speculative_released"] == 1
    assert turn["ended_by"] and turn["wait_ms"] > 0
    assert turn["reply_text"] == f"{HOLD} {BOOKED}"

    # the cancelled attempts asked Gemini for the booking, but only one booking was made ...
    asked = [r for r in gemini.turn_requests if not r.function_responses()]
    assert len(asked) >= 2
    (booking,) = rows(db, "SELECT created_at FROM appointments WHERE status = 'booked'")
    tool_runs = rows(db, "SELECT * FROM turns WHERE role = 'tool'")
    assert len(tool_runs) == 1
    assert sum(len(r.function_responses()) for r in gemini.turn_requests) == 1
    # ... after the turn was committed
    (decided,) = [e for e in seen if isinstance(e, TurnDecided)]
    (with_result,) = [r for r in gemini.turn_requests if r.function_responses()]
    assert with_result.received_at > decided.at
    booked_at = datetime.fromisoformat(booking["created_at"].replace("Z", "+00:00"))
    assert booked_at >= committed_wall[0]

    # nothing of a cancelled attempt reached the caller: every reply audio is a released reply
    speech_at = next(e.at for e in seen if isinstance(e, SpeechStarted))
    greeting = {e.reply_id for e in seen if isinstance(e, AudioSent) and e.at < speech_at}
    released = {e.reply_id for e in seen if isinstance(e, ReplyStarted)}
    sent = {e.reply_id for e in seen if isinstance(e, AudioSent)}
    assert sent - greeting == released and len(released) == 1
    first_audio = min(e.at for e in seen if isinstance(e, AudioSent) and e.at > speech_at)
    assert first_audio > decided.at, "no bot audio before the turn was committed"
    # the conversation holds one caller turn and one answer: the cancelled attempts left no trace
    history = rows(db, "SELECT role, text FROM turns WHERE role != 'tool' ORDER BY id")
    assert [r["role"] for r in history] == ["assistant", "user", "assistant"]
    (done,) = [e for e in seen if isinstance(e, TurnCompleted)]
    assert done.decided is decided and not done.interrupted
    assert result.turns[0].first_reply_frame_at is not None
