"""The messaging channel with the real conversation engine (appliance.conversation.engine)
answering through the Gemini stand-in: the customer who called is the customer who writes,
history crosses channels, and the reply that was sent is what the engine remembers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.config import Settings
from appliance.conversation.engine import Engine
from appliance.conversation.tools import ToolRegistry
from appliance.llm.failover import ChatModels
from appliance.llm.gemini import GeminiModel
from appliance.store.db import Database
from tests.support.fakes import listen
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.messaging import (
    Harness,
    write_settings,
)

PHONE = "+972501234567"


@pytest.fixture
async def real(tmp_path: Path, fake_twilio: FakeTwilio, gemini: FakeGemini):
    settings = write_settings(
        tmp_path, fake_twilio.base_url,
        extra=f"[gemini]\nbase_url = {gemini.base_url}\nfirst_token_timeout_ms = 2000\n"
              "stall_timeout_ms = 2000\nretry_after_failure_s = 1\n",
        environ={"GEMINI_API_KEY": "test-key"})

    async def make_engine(s: Settings, db: Database) -> Any:
        engine = Engine(s, db, ChatModels(gemini=GeminiModel(s.gemini)), ToolRegistry.default())
        await engine.start()
        return engine

    h = await Harness(tmp_path, fake_twilio, make_engine=make_engine, settings=settings).start()
    try:
        yield h
    finally:
        await h.stop()


async def test_the_caller_who_writes_on_whatsapp_continues_the_same_conversation(
        real: Harness, gemini: FakeGemini) -> None:
    call = await real.engine.open(PHONE, "call")
    gemini.script(Reply(text="Yes, we repair fridges."))
    await listen(call, "Do you repair fridges?")

    gemini.script(Reply(text="**A fridge repair** costs *250 shekels*."))
    await real.send(f"whatsapp:{PHONE}", "How much would it cost?")
    await real.settle()

    (sent,) = real.fake.messages
    assert sent.body == "*A fridge repair* costs _250 shekels_."
    assert [text for _, text in gemini.requests[-1].all_texts()][-3:] == [
        "Do you repair fridges?", "Yes, we repair fridges.", "How much would it cost?"]
    turns = real.rows("SELECT channel, role, text FROM turns ORDER BY id")
    assert [(t["channel"], t["role"]) for t in turns] == [
        ("call", "user"), ("call", "assistant"), ("whatsapp", "user"), ("whatsapp", "assistant")]
    assert turns[-1]["text"] == "**A fridge repair** costs *250 shekels*."
    assert real.rows("SELECT phone FROM customers") == [{"phone": PHONE}]


async def test_sms_then_whatsapp_share_history_across_a_restart(
        real: Harness, gemini: FakeGemini) -> None:
    gemini.script(Reply(text="We open at nine."))
    await real.send(PHONE, "When do you open?")
    await real.settle()
    await real.restart()
    gemini.script(Reply(text="Yes, on Friday until one."))
    await real.send(f"whatsapp:{PHONE}", "And on Friday?")
    await real.settle()
    assert [m.body for m in real.fake.messages] == ["We open at nine.",
                                                    "Yes, on Friday until one."]
    assert [text for _, text in gemini.requests[-1].all_texts()][-3:] == [
        "When do you open?", "We open at nine.", "And on Friday?"]


async def test_stop_marks_the_engines_customer_record(real: Harness, gemini: FakeGemini) -> None:
    gemini.script(Reply(text="Hello!"))
    await real.send(f"whatsapp:{PHONE}", "hi")
    await real.settle()
    await real.send(f"whatsapp:{PHONE}", "STOP")
    await real.settle()
    assert real.rows("SELECT phone, opted_out FROM customers") == [
        {"phone": PHONE, "opted_out": 1}]
    await real.send(f"whatsapp:{PHONE}", "one more question")
    await real.settle()
    assert len(gemini.turn_requests) == 1          # the model was not asked again
