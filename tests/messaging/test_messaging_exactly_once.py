"""Issue 13, item 6: an inbound message's side effects happen exactly once, through a real
`kill -9` of a real server process at each step of answering it.

The server process runs the real messaging app, the real conversation engine with the real
Gemini client (against the fake Gemini server here), the real business tools and their wiring
to the outbox; Twilio is the fake REST server. The model answers every message by calling
take_message (a row in taken_messages and a WhatsApp notice to the owner), then replies. For
every step, the process kills itself there (APPLIANCE_FAILPOINT), a second process starts on
the same database and Twilio retries the webhook. Then: 0 messages lost, 0 sent twice, 0 tools
run twice. "tool_writing" (inside the tool's transaction) and "tool_wrote" (its writes committed,
its result not yet recorded) are the crash between a tool's writes and its record. And a message that crashes the box every time gets the apology once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.fakes.gemini_server import FakeGemini
from tests.support.faults import CUSTOMER, OWNER, REPLY, Server, model, settings_for
from tests.support.messaging import inbound_params, new_sid, twilio_stand_in
from tests.support.messaging import query, wait_until

STEPS = ["answer_started", "tool_writing", "tool_wrote", "tool_recorded", "answer_ready",
         "answer_stored", "twilio_accepted"]

@pytest.mark.parametrize("step", STEPS)
async def test_kill_9_at_each_step_loses_nothing_and_repeats_nothing(tmp_path: Path,
                                                                     step: str) -> None:
    async with twilio_stand_in() as twilio, FakeGemini() as gemini:
        gemini.default = model                       # type: ignore[assignment]
        settings = await settings_for(tmp_path, twilio, gemini)
        db = settings.storage.database
        params = inbound_params(new_sid(), CUSTOMER, "Hi, I'm Dana, please call me back")
        first = await Server(settings.path, failpoint=step).start()
        try:
            await first.post(params)
            assert await first.died(), f"the process did not reach {step}"
        finally:
            await first.kill()
        second = await Server(settings.path).start()
        try:
            assert await second.post(params) == 200   # Twilio retries the webhook too
            await wait_until(lambda: query(db, "SELECT state FROM messages_in WHERE body != 'hi'") ==
                             [{"state": "replied"}] and all(
                r["state"] == "sent" for r in query(db, "SELECT state FROM messages_out")),
                timeout=30)
            await asyncio.sleep(1.0)                  # nothing else trickles out
        finally:
            await second.kill()
    bodies = sorted((m.to, m.body.split("\n")[0]) for m in twilio.messages)
    assert bodies == sorted([(CUSTOMER, REPLY), (f"whatsapp:{OWNER}", "Message from Dana")]), \
        bodies
    assert len(query(db, "SELECT 1 FROM taken_messages")) == 1
    assert len(query(db, "SELECT 1 FROM action_log WHERE kind = 'message'")) == 1
    keys = [r["key"] for r in query(db, "SELECT key FROM tool_effects ORDER BY key")]
    assert [k.partition("#")[2] for k in keys] == ["", "message"], keys   # result + write


async def test_a_message_that_kills_the_box_every_time_gets_the_apology_once(
        tmp_path: Path) -> None:
    async with twilio_stand_in() as twilio, FakeGemini() as gemini:
        gemini.default = model                       # type: ignore[assignment]
        settings = await settings_for(tmp_path, twilio, gemini)
        db = settings.storage.database
        params = inbound_params(new_sid(), CUSTOMER, "the message of death")
        for _ in range(3):                           # [messaging] attempts: 3 crashes
            server = await Server(settings.path, failpoint="engine_answering").start()
            try:
                await server.post(params)
                assert await server.died()
            finally:
                await server.kill()
        last = await Server(settings.path, failpoint="engine_answering").start()
        try:                                          # the 4th start does not answer: apology
            await last.post(params)
            await wait_until(lambda: any(m.to == CUSTOMER for m in twilio.messages),
                             timeout=30)
            await asyncio.sleep(1.0)
        finally:
            await last.kill()
    to_customer = [m.body for m in twilio.messages if m.to == CUSTOMER]
    assert len(to_customer) == 1 and "sorry" in to_customer[0].lower(), to_customer
    assert [m for m in twilio.messages if m.to != CUSTOMER] == []   # the model never ran
    (row,) = query(db, "SELECT state, error, attempts FROM messages_in WHERE body != 'hi'")
    assert row["state"] == "replied" and row["attempts"] == 4 and "gave up" in row["error"]
