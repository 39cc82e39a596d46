"""Keys typed during a call reach the conversation, through the real server and a real
WebSocket: "caller keyed: 12045#" becomes the caller's turn and is answered like speech; a 0
inside a number is a digit, not the operator key; keys without # end after the quiet time."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.call.dtmf import KeyedDigits
from appliance.server import running
from appliance.simulate import CallerTurn, simulate_call
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support import calls
from tests.support.calls import REPLY, db_rows

gemini = calls.gemini      # the Gemini stand-in answering REPLY



@pytest.fixture
async def server(make_settings, gemini):
    settings = make_settings(
        extra=f"[gemini]\nbase_url = {gemini.base_url}\n"
              "[call]\nsilence_prompt_s = 30\ndtmf_quiet_s = 1\n",
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
    async with running(settings) as srv:
        yield srv


def keys(digits: str) -> list[CallerTurn]:
    return [CallerTurn(Path("-"), dtmf=d) for d in digits]


async def test_keyed_digits_become_a_turn_and_zero_inside_is_not_the_operator(server, gemini
                                                                               ) -> None:
    result = await simulate_call(server.url, PUBLIC_URL, TOKEN, keys("12045#"),
                                 reply_timeout_s=0.2, tail_s=4)
    assert not result.closed_by_server, "no transfer: the 0 was part of the number"
    (request,) = gemini.turn_requests
    assert request.user_texts()[-1].endswith("caller keyed: 12045#")
    (row,) = db_rows(server, "SELECT transcript, reply_text FROM call_turns")
    assert row["transcript"] == "caller keyed: 12045#" and row["reply_text"] == REPLY
    (c,) = db_rows(server, "SELECT outcome, transfer_to FROM calls")
    assert c["transfer_to"] is None


async def test_keys_without_hash_end_after_the_quiet_time(server, gemini) -> None:
    result = await simulate_call(server.url, PUBLIC_URL, TOKEN, keys("5521234"),
                                 reply_timeout_s=0.1, tail_s=4)
    assert not result.closed_by_server
    (request,) = gemini.turn_requests
    assert request.user_texts()[-1].endswith("caller keyed: 5521234")


def test_keyed_digits_state_machine() -> None:
    k = KeyedDigits(quiet_s=2.0, max_digits=4)
    assert k.add("1", 0.0) is None and k.pending and k.deadline == 2.0
    assert k.due(1.9) is None and k.add("x", 1.0) is None
    assert k.due(3.1) == "1" and not k.pending
    assert [k.add(d, 5.0) for d in "1234"] == [None, None, None, "1234"]
    assert k.add("#", 6.0) == "#"
