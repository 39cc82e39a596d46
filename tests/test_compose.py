"""The composed appliance end to end: a booking made by phone, through the real server (the
Media Streams WebSocket, VAD, Whisper, Piper on the generated test models), the real engine and
tools (the Gemini stand-in calls `book_appointment`), whose confirmation SMS arrives at the
Twilio REST stand-in; and the call's events as a subscriber of `services.call_events` sees them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


from appliance.call.events import (CallEnded, CallEvent, CallStarted, ReplyStarted,
                                   SpeechEnded, TurnCompleted, TurnTranscribed)
from appliance.server import running
from appliance.simulate import CallerTurn, simulate_call
from tests.support.fixtures import ACCOUNT_SID, AUDIO_DIR, PUBLIC_URL, TOKEN
from tests.support.fakes.gemini_server import Call, Reply

SMS_FROM = "+15550003333"
CALLER = "+15550001111"
MANIFEST = {e["file"]: e for e in json.loads((AUDIO_DIR / "manifest.json").read_text())}


def tomorrow_ten() -> str:
    day = datetime.now(ZoneInfo("Asia/Jerusalem")).date() + timedelta(days=1)
    return f"{day.isoformat()}T10:00"


async def test_a_booking_by_phone_sends_its_confirmation_through_twilio(
        make_settings, gemini, fake_twilio) -> None:
    start = tomorrow_ten()
    gemini.script(Reply(calls=(Call("book_appointment", {"start": start}),), ttft_s=0.05),
                  Reply(text="You are booked for tomorrow at ten. Anything else?", ttft_s=0.05))
    settings = make_settings(
        extra=(f"[gemini]\nbase_url = {gemini.base_url}\n[call]\nsilence_prompt_s = 30\nspeculative_replies = false\n"
               f"[twilio]\naccount_sid = {ACCOUNT_SID}\napi_base_url = {fake_twilio.base_url}\n"
               f"[messaging]\nsms_from = {SMS_FROM}\n"
               f"[appointments]\nhours = mon-sun 08:00-20:00\n"),
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
    seen: list[CallEvent] = []
    async with running(settings) as srv:
        assert srv.services.health()["ready"], srv.services.health()
        srv.services.call_events.subscribe(seen.append)
        turn = CallerTurn(AUDIO_DIR / "en_book.wav",
                          speech_end_s=MANIFEST["en_book.wav"]["speech_end_s"])
        result = await simulate_call(srv.url, PUBLIC_URL, TOKEN, [turn], caller=CALLER,
                                     account_sid=ACCOUNT_SID)
        for _ in range(100):
            if fake_twilio.sent_to(CALLER):
                break
            await asyncio.sleep(0.1)
        conn = sqlite3.connect(settings.storage.database)
        try:
            booked = conn.execute("SELECT a.channel, a.call_id = k.id FROM appointments a "
                                  "JOIN calls k ON k.call_sid = ? WHERE a.status = 'booked'",
                                  (result.call_sid,)).fetchall()
        finally:
            conn.close()

    assert result.turns and result.turns[0].first_reply_frame_at is not None
    assert booked == [("call", 1)], "booked on this call"
    (sms,) = fake_twilio.sent_to(CALLER)
    assert sms.from_ == SMS_FROM
    assert "your appointment is booked for" in sms.body and "Sunrise Appliances" in sms.body
    # the tool's result went back to the model with the next request
    assert "Booked: appointment_id=" in json.dumps(gemini.turn_requests[-1].function_responses())

    kinds = [type(e) for e in seen]
    assert kinds[0] is CallStarted and kinds[-1] is CallEnded
    for kind in (SpeechEnded, TurnTranscribed, ReplyStarted, TurnCompleted):
        assert kind in kinds, kind
    (done,) = [e for e in seen if isinstance(e, TurnCompleted)]
    assert done.reply_text == "You are booked for tomorrow at ten. Anything else?"
    assert done.timings.first_frame_at is not None and not done.interrupted
    assert {e.call_id for e in seen} == {done.call_id}
