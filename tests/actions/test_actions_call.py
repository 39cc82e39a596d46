"""A scripted call end to end: the real engine and Gemini client against the fake Gemini
server, the business tools, the confirmation to the caller, and the owner's summary by e-mail
(aiosmtpd on loopback) and WhatsApp - compared as a whole."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from appliance.actions.summary import after_call, after_conversation, after_dial, summarize_call
from appliance.conversation.engine import Engine
from appliance.llm.failover import ChatModels
from appliance.llm.gemini import GeminiModel
from tests.support.actions import (
    JLM,
    NOW,
    OWNER_EMAIL,
    OWNER_WHATSAPP,
    FakeSmtp,
    Harness,
    make_harness,
    say,
)
from tests.support.fakes.gemini_server import Call, FakeGemini, Recorded, Reply

CALLER = "+972501234567"
PLANTED = "+15558675309"


@pytest.fixture
async def h(tmp_path: Path, gemini: FakeGemini, smtp_server: FakeSmtp):
    harness = await make_harness(tmp_path, NOW, smtp_port=smtp_server.port,
                                 gemini_url=gemini.base_url)
    yield harness
    harness.close()


def last_tool_result(recorded: Recorded) -> str:
    return str(recorded.function_responses()[-1]["response"])


async def test_a_call_books_an_appointment_and_the_owner_gets_the_summary(
        h: Harness, gemini: FakeGemini, smtp_server: FakeSmtp) -> None:
    engine = Engine(h.settings, h.db, ChatModels(gemini=GeminiModel(h.settings.gemini)),
                    h.registry)
    call_id = await h.db.execute(
        "INSERT INTO calls(call_sid, caller, mode) VALUES ('CA0001', ?, 'stream')", (CALLER,))
    conversation = await engine.open(CALLER, "call", call_id)
    await h.db.execute("UPDATE calls SET customer_id = ? WHERE id = ?",
                       (conversation.customer.id, call_id))
    gemini.script(
        # 1: "tomorrow afternoon" -> the model looks for slots, then offers two.
        Reply(calls=(Call("find_free_slots", {"when": "tomorrow afternoon"}),)),
        lambda r: Reply(text="I can do 12:00 or 12:30 tomorrow." if "start=2025-03-17T12:30"
                        in last_tool_result(r) else "Nothing found."),
        # 2: the caller picks 12:30 and gives a name; the model also tries to aim the
        # confirmation at a planted number (as if a document had told it to).
        Reply(calls=(Call("update_customer", {"name": "Dana Levi"}),
                     Call("book_appointment", {"start": "2025-03-17T12:30",
                                               "note": "fridge repair", "to": PLANTED}))),
        lambda r: Reply(text="You're booked for tomorrow at 12:30."
                        if "Booked: appointment_id=1" in last_tool_result(r) else "Failed."),
        # 3: "send the address to my friend" -> it can only go to the caller.
        Reply(calls=(Call("send_me_info", {"kind": "address", "phone": PLANTED}),)),
        Reply(text="I've sent you the address by text."),
        # 4: "and put me through to +1 555..." -> the operator, and only within hours.
        Reply(calls=(Call("transfer_to_human", {"reason": "wants the manager",
                                                "number": PLANTED}),)),
        Reply(text="Connecting you now."),
    )
    reply, _ = await say(conversation, "Hi, can I book a fridge repair tomorrow afternoon?")
    assert reply == "I can do 12:00 or 12:30 tomorrow."
    assert {"find_free_slots", "book_appointment", "send_me_info",
            "transfer_to_human"} <= set(gemini.turn_requests[0].tool_names)
    reply, _ = await say(conversation, "12:30 please. I'm Dana Levi.")
    assert reply == "You're booked for tomorrow at 12:30."
    reply, _ = await say(conversation, "Send the address to my friend please.")
    reply, actions = await say(conversation, f"And put me through to {PLANTED}.")
    assert [(a.kind, a.target) for a in actions] == [("transfer", "+972501112233")]

    # What left the box during the call: two texts, both to the caller.
    assert [(s.channel, s.to, s.reason) for s in h.notifier.sent] == [
        ("sms", CALLER, "booking_confirmation"), ("sms", CALLER, "info")]

    # The call ends (the call code records it), then the summary.
    await h.db.execute(
        "UPDATE calls SET started_at = '2025-03-16T08:00:05.000Z', "
        "ended_at = '2025-03-16T08:03:35.000Z', outcome = 'transferred', "
        "transfer_to = '+972501112233' WHERE id = ?", (call_id,))
    assert await after_call(h.services, call_id) is None, "waits for the <Dial> result"
    summary = await after_dial(h.services, call_id, answered=True)
    assert summary is not None
    expected = """\
Who: Dana Levi, +972501234567, new customer
When: Sun 16 Mar 2025 10:00, 3 min 30 s (phone call)
Outcome: transferred to +972501112233
What was asked:
- "Hi, can I book a fridge repair tomorrow afternoon?"
- "12:30 please. I'm Dana Levi."
- "Send the address to my friend please."
- "And put me through to +15558675309."
What the bot answered:
- "I can do 12:00 or 12:30 tomorrow."
- "You're booked for tomorrow at 12:30."
- "I've sent you the address by text."
- "Connecting you now."
What was done:
- Booked: #1 Mon 17 Mar 12:30 (fridge repair)
- Sent information: address: sent
- Transferred the call: wants the manager
- Tools run: find_free_slots, update_customer, book_appointment, send_me_info, transfer_to_human
Needs a human:
- nothing"""
    assert summary.text == expected
    assert summary.subject == "Call from Dana Levi: booked"

    # E-mail through the outbox to the fake SMTP server, WhatsApp through the notifier.
    assert await h.services.email.send_due() == 1
    [mail] = smtp_server.messages
    assert mail["To"] == OWNER_EMAIL and mail["Subject"] == "Call from Dana Levi: booked"
    assert mail.get_content().replace("\r\n", "\n").strip() == expected
    owner = [s for s in h.notifier.sent if s.to == OWNER_WHATSAPP]
    assert len(owner) == 1 and owner[0].reason == "summary" and expected in owner[0].body
    # Once per call: a second call end (a retried webhook) sends nothing more.
    assert await after_call(h.services, call_id) is None
    assert await h.services.email.send_due() == 0
    assert {s.to for s in h.notifier.sent} == {CALLER, OWNER_WHATSAPP}
    await engine.close()


async def test_summary_lists_what_needs_a_human(h: Harness) -> None:
    h.clock.now = datetime(2025, 3, 15, 10, 0, tzinfo=JLM)     # Saturday: nobody to transfer to
    ctx = await h.context(CALLER, call_sid="CA0002")
    await h.memory.add_turn(ctx.customer.id, "call", ctx.call_id, "user", "Can I talk to Avi?")
    await h.run(ctx, "transfer_to_human", {"reason": "asks for Avi"})
    await h.run(ctx, "take_message", {"message": "Call me back about the warranty",
                                      "name": "Moshe", "urgent": True})
    await h.db.execute("UPDATE calls SET started_at = '2025-03-15T08:00:00.000Z', "
                       "ended_at = '2025-03-15T08:00:45.000Z', outcome = 'message_taken' "
                       "WHERE id = ?", (ctx.call_id,))
    summary = await summarize_call(h.db, ctx.call_id, "Asia/Jerusalem")
    assert summary.text == """\
Who: Moshe, +972501234567, new customer
When: Sat 15 Mar 2025 10:00, 45 s (phone call)
Outcome: message taken
What was asked:
- "Can I talk to Avi?"
What the bot answered:
- nothing
What was done:
- Could not transfer: outside_hours: asks for Avi
- Took a message: #1 urgent
Needs a human:
- Could not transfer: outside_hours: asks for Avi
- URGENT message (from Moshe): "Call me back about the warranty\""""
    assert summary.subject == "Call from Moshe: needs a human"


async def test_a_failed_call_with_a_withheld_number(h: Harness) -> None:
    call_id = await h.db.execute(
        "INSERT INTO calls(call_sid, caller, mode, started_at, ended_at, outcome, error) "
        "VALUES ('CA0003', '', 'stream', '2025-03-16T08:00:00.000Z', "
        "'2025-03-16T08:00:05.000Z', 'failed', 'stt crashed')")
    summary = await summarize_call(h.db, call_id, "Asia/Jerusalem")
    assert summary.text.splitlines()[0] == "Who: unknown caller (number withheld)"
    assert summary.needs_human == ("the call failed (stt crashed); call the customer back",)


async def test_a_whatsapp_conversation_summary(h: Harness) -> None:
    ctx = await h.context(CALLER, channel="whatsapp")
    await h.memory.add_turn(ctx.customer.id, "whatsapp", None, "user", "Do you fix ovens?")
    await h.run(ctx, "book_appointment", {"start": "2025-03-17T09:00", "note": "oven"})
    summary = await after_conversation(h.services, ctx.customer.id, "2000-01-01T00:00:00Z")
    assert summary is not None
    lines = summary.text.splitlines()
    assert lines[0] == "Who: name not given, +972501234567, new customer"
    assert lines[1].endswith("(WhatsApp)")
    assert "- Booked: #1 Mon 17 Mar 09:00 (oven)" in lines
    assert summary.subject == "WhatsApp from +972501234567: booked"
    assert await h.db.fetchone("SELECT 1 FROM email_outbox WHERE dedupe_key LIKE "
                               "'summary:conversation:%'")
