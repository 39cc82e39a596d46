"""Issue 13, items 2 and 3, with the real engine and Gemini client against the fake Gemini
server and the real business tools:

- withheld-number callers are not one customer: each gets a throw-away record, no history, no
  list/move/cancel, nothing sent; booking needs a callback number;
- caller ID alone does not move, cancel or list appointments on a call: a one-time code goes to
  the number by message (through the notifier, i.e. the outbox) and must be read back; it is
  stored hashed, expires and allows three tries. A STIR/SHAKEN A-attested caller skips it only
  when [security] trust_attested_callers is set.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.conversation.engine import Engine
from appliance.llm.failover import ChatModels
from appliance.llm.gemini import GeminiModel
from tests.support.actions import NOW, Harness, make_harness, say
from tests.support.fakes.gemini_server import Call, FakeGemini, Recorded, Reply

VICTIM = "+972501234567"
WITHHELD = "+266696687"


async def harness_for(tmp_path: Path, gemini: FakeGemini, **security: str) -> Harness:
    return await make_harness(tmp_path, NOW, gemini_url=gemini.base_url,
                              sections={"security": security} if security else None)


@pytest.fixture
async def h(tmp_path: Path, gemini: FakeGemini):
    harness = await harness_for(tmp_path, gemini)
    yield harness
    harness.close()


def result(r: Recorded) -> str:
    return str(r.function_responses()[-1]["response"])


def echo(r: Recorded) -> Reply:
    """The model says what the tool answered (so the test reads it from the reply)."""
    return Reply(text=result(r)[:300])


async def tool(conversation, gemini: FakeGemini, name: str, args: dict | None = None) -> str:
    gemini.script(Reply(calls=(Call(name, args or {}),)), echo)
    reply, _ = await say(conversation, f"(please {name})")
    return reply


async def open_call(h: Harness, engine: Engine, caller: str, sid: str,
                    attestation: str = ""):
    call_id = await h.db.execute("INSERT INTO calls(call_sid, caller, mode, attestation) "
                                 "VALUES (?, ?, 'stream', ?)", (sid, caller, attestation))
    return await engine.open(caller, "call", call_id)


async def booked_for(h: Harness, phone: str) -> int:
    ctx = await h.context(phone, "whatsapp")
    text = await h.run(ctx, "book_appointment", {"start": "2025-03-17T12:00", "note": "oven"})
    assert text.startswith("Booked: appointment_id="), text
    h.notifier.sent.clear()
    return int(re.search(r"appointment_id=(\d+)", text).group(1))


def engine_for(h: Harness) -> Engine:
    return Engine(h.settings, h.db, ChatModels(gemini=GeminiModel(h.settings.gemini)),
                  h.registry)


def statuses(h: Harness, appointment_id: int) -> str:
    import sqlite3

    conn = sqlite3.connect(h.settings.storage.database)
    try:
        return conn.execute("SELECT status FROM appointments WHERE id = ?",
                            (appointment_id,)).fetchone()[0]
    finally:
        conn.close()


async def test_a_spoofed_caller_id_cannot_list_move_or_cancel(h: Harness,
                                                              gemini: FakeGemini) -> None:
    appointment = await booked_for(h, VICTIM)
    conversation = await open_call(h, engine_for(h), VICTIM, "CA-spoof")
    for name, args in [("list_my_appointments", {}), ("cancel_appointment", {}),
                       ("move_appointment", {"new_start": "2025-03-17T15:00"})]:
        reply = await tool(conversation, gemini, name, args)
        assert "identity is not confirmed" in reply and "send_verification_code" in reply
        assert "12:00" not in reply                      # nothing read out
    assert statuses(h, appointment) == "booked"
    assert h.notifier.sent == []


async def test_the_code_read_back_unlocks_the_call(h: Harness, gemini: FakeGemini) -> None:
    appointment = await booked_for(h, VICTIM)
    conversation = await open_call(h, engine_for(h), VICTIM, "CA-real")
    reply = await tool(conversation, gemini, "check_verification_code", {"code": "123456"})
    assert "No code was sent" in reply
    reply = await tool(conversation, gemini, "send_verification_code")
    assert "code was sent by sms" in reply
    [sent] = h.notifier.sent
    assert (sent.channel, sent.to, sent.reason) == ("sms", VICTIM, "verification_code")
    code = re.search(r"\b(\d{6})\b", sent.body).group(1)
    rows = await h.db.fetchall("SELECT code_hash, salt, state FROM verification_codes")
    assert len(rows) == 1 and code not in rows[0]["code_hash"] + rows[0]["salt"]
    wrong = f"{(int(code) + 1) % 10 ** 6:06d}"
    assert "wrong" in await tool(conversation, gemini, "check_verification_code",
                                 {"code": wrong})
    assert "Confirmed" in await tool(conversation, gemini, "check_verification_code",
                                     {"code": " ".join(code)})       # "1 2 3 4 5 6" spoken
    reply = await tool(conversation, gemini, "cancel_appointment", {})
    assert f"Cancelled appointment_id={appointment}" in reply
    assert statuses(h, appointment) == "cancelled"
    # the next conversation of the same call (a <Gather> call opens one per turn) stays verified
    again = await engine_for(h).open(VICTIM, "call", conversation.context.call_id)
    assert again.context.verified


async def test_three_wrong_codes_void_it_and_an_old_code_expires(h: Harness,
                                                                 gemini: FakeGemini) -> None:
    appointment = await booked_for(h, VICTIM)
    conversation = await open_call(h, engine_for(h), VICTIM, "CA-guess")
    await tool(conversation, gemini, "send_verification_code")
    code = re.search(r"\b(\d{6})\b", h.notifier.sent[-1].body).group(1)
    wrong = f"{(int(code) + 1) % 10 ** 6:06d}"
    replies = [await tool(conversation, gemini, "check_verification_code", {"code": wrong})
               for _ in range(3)]
    assert "wrong" in replies[0] and "wrong" in replies[1] and "Too many" in replies[2]
    assert "No code" in await tool(conversation, gemini, "check_verification_code",
                                   {"code": code})            # the right one, too late
    await tool(conversation, gemini, "send_verification_code")
    code = re.search(r"\b(\d{6})\b", h.notifier.sent[-1].body).group(1)
    h.clock.advance(minutes=11)
    assert "expired" in await tool(conversation, gemini, "check_verification_code",
                                   {"code": code})
    assert "identity is not confirmed" in await tool(conversation, gemini,
                                                     "cancel_appointment", {})
    assert statuses(h, appointment) == "booked"


@pytest.mark.parametrize("trust, needs_code", [("false", True), ("true", False)])
async def test_an_attested_caller_skips_the_code_only_if_the_owner_says_so(
        tmp_path: Path, gemini: FakeGemini, trust: str, needs_code: bool) -> None:
    h = await harness_for(tmp_path, gemini, trust_attested_callers=trust)
    try:
        await booked_for(h, VICTIM)
        engine = engine_for(h)
        conversation = await open_call(h, engine, VICTIM, "CA-att", "TN-Validation-Passed-A")
        reply = await tool(conversation, gemini, "list_my_appointments")
        assert ("identity is not confirmed" in reply) == needs_code
        b = await open_call(h, engine, VICTIM, "CA-b", "TN-Validation-Passed-B")
        assert "identity is not confirmed" in await tool(b, gemini, "list_my_appointments")
    finally:
        h.close()


async def test_messages_are_not_stepped_up(h: Harness, gemini: FakeGemini) -> None:
    await booked_for(h, VICTIM)
    conversation = await engine_for(h).open("whatsapp:" + VICTIM, "whatsapp")
    assert "upcoming appointments" in await tool(conversation, gemini, "list_my_appointments")


async def test_withheld_numbers_are_not_one_customer(h: Harness, gemini: FakeGemini) -> None:
    engine = engine_for(h)
    a = await open_call(h, engine, WITHHELD, "CA-a")
    gemini.script(Reply(text="Noted."))
    await say(a, "My name is Dana, my alarm code is 4321.")
    await a.mark_heard("Noted.", interrupted=False)
    reply = await tool(a, gemini, "book_appointment", {"start": "2025-03-17T12:00"})
    assert "callback_number" in reply                      # no number to confirm to
    reply = await tool(a, gemini, "book_appointment",
                       {"start": "2025-03-17T12:00", "callback_number": "+972 52-765 4321"})
    assert "Booked: appointment_id=" in reply
    assert h.notifier.sent == []                           # nothing to a placeholder number

    b = await open_call(h, engine, "+266696687", "CA-b")   # another caller, same placeholder
    assert b.customer.id != a.customer.id and b.customer.anonymous
    gemini.script(Reply(text="Hello."))
    await say(b, "What did I tell you last time?")
    assert "4321" not in str(gemini.turn_requests[-1].body)  # A's words are not in B's prompt
    for name in ("list_my_appointments", "cancel_appointment", "send_verification_code"):
        assert "withheld" in await tool(b, gemini, name)
    note = await h.db.fetchone("SELECT note, customer_id FROM appointments")
    assert note["customer_id"] == a.customer.id and "+972527654321" in note["note"]
    anonymous = await h.db.fetchall("SELECT phone FROM customers WHERE phone LIKE 'anonymous:%'")
    assert len(anonymous) == 2
    assert await h.db.fetchall("SELECT 1 FROM customers WHERE phone = ?", (WITHHELD,)) == []


async def test_withheld_callers_are_not_exported_as_customers(h: Harness) -> None:
    import io

    from appliance.actions.customers import write_csv

    await h.memory.anonymous_customer()
    await h.memory.customer(VICTIM)
    out = io.StringIO()
    assert await h.db.read(lambda c: write_csv(c, out)) == 1
    assert "anonymous:" not in out.getvalue() and VICTIM in out.getvalue()
