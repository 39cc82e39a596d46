"""Issue 13: the Gemini fault set through the real messaging app and engine (no local model),
and item 11's bounds. Every fault - 429, 500, 503, connection refused, a stall before and after
the first token, a stream broken midway, a slow trickle - still gets the customer an answer
(the reply, or the apology), exactly one; every request carries maxOutputTokens; a huge reply
is at most 3 WhatsApp parts; one sender gets at most [security] inbound_per_hour answers.
(Failover to the local model for the same faults: test_failover.py; the client: test_gemini.py)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.config import Settings
from appliance.conversation.engine import Engine
from appliance.conversation.tools import ToolRegistry
from appliance.llm.failover import ChatModels
from appliance.llm.gemini import MAX_OUTPUT_TOKENS, GeminiModel
from appliance.store.db import Database
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.messaging import Harness, write_settings

WA = "whatsapp:+972501234567"
LONG = "The answer goes on. " * 40

FAULTS = {
    "http_429": Reply(status=429),
    "http_500": Reply(status=500),
    "http_503": Reply(status=503),
    "stall_before_first_token": Reply(text="Too late.", ttft_s=5),
    "stall_after_first_token": Reply(text=LONG, stall_after=1, stall_s=5),
    "broken_mid_stream": Reply(text=LONG, break_after=2),
    "slow_trickle": Reply(text=LONG * 3, words_per_chunk=1, tokens_per_s=20),
}


async def start(tmp_path: Path, twilio: FakeTwilio, gemini: FakeGemini,
                extra: str = "") -> Harness:
    settings = write_settings(
        tmp_path, twilio.base_url,
        extra=f"[gemini]\nbase_url = {gemini.base_url}\nfirst_token_timeout_ms = 1000\n"
              "stall_timeout_ms = 1000\ntotal_timeout_ms = 3000\nretry_after_failure_s = 1\n"
              + extra, environ={"GEMINI_API_KEY": "test-key"})

    async def make_engine(s: Settings, db: Database) -> Any:
        return Engine(s, db, ChatModels(gemini=GeminiModel(s.gemini)), ToolRegistry.default())

    return await Harness(tmp_path, twilio, make_engine=make_engine, settings=settings).start()


@pytest.mark.parametrize("fault", [*FAULTS, "connection_refused"])
async def test_every_fault_still_gets_one_answer(tmp_path: Path, fake_twilio: FakeTwilio,
                                                 gemini: FakeGemini, fault: str) -> None:
    h = await start(tmp_path, fake_twilio, gemini)
    try:
        if fault == "connection_refused":
            await gemini.stop()
        else:
            gemini.script(FAULTS[fault])
        await h.send(WA, "When do you open?")
        await h.settle(30)
        assert len(fake_twilio.messages) == 1, [m.body for m in fake_twilio.messages]
        (row,) = h.rows("SELECT state FROM messages_in")
        assert row["state"] == "replied"
    finally:
        await h.stop()


async def test_replies_are_bounded(tmp_path: Path, fake_twilio: FakeTwilio,
                                   gemini: FakeGemini) -> None:
    h = await start(tmp_path, fake_twilio, gemini)
    try:
        gemini.script(Reply(text="Our story. " * 1200))          # ~13 000 characters
        await h.send(WA, "Tell me everything.")
        await h.settle()
        generation = gemini.turn_requests[-1].body["generationConfig"]
        assert generation["maxOutputTokens"] == MAX_OUTPUT_TOKENS   # thinking_budget 0
        bodies = [m.body for m in fake_twilio.messages]
        assert len(bodies) == 3 and all(len(b) <= 1600 for b in bodies)
        assert bodies[-1].endswith("...")
    finally:
        await h.stop()


async def test_one_sender_gets_at_most_the_hourly_answers(tmp_path: Path,
                                                          fake_twilio: FakeTwilio,
                                                          gemini: FakeGemini) -> None:
    h = await start(tmp_path, fake_twilio, gemini, "[security]\ninbound_per_hour = 2\n")
    try:
        gemini.default = Reply(text="Hello!")
        for n in range(5):
            await h.send(WA, f"spam {n}")
        await h.send("whatsapp:+972541112233", "a different customer")
        await h.settle()
        assert len([m for m in fake_twilio.messages if m.to == WA]) == 2
        assert len([m for m in fake_twilio.messages if m.to != WA]) == 1
        rows = h.rows("SELECT state, error FROM messages_in WHERE phone = '+972501234567' "
                      "ORDER BY id")
        assert [r["state"] for r in rows] == ["replied"] * 2 + ["ignored"] * 3   # all kept
        assert all("rate limited" in r["error"] for r in rows[2:])
    finally:
        await h.stop()
