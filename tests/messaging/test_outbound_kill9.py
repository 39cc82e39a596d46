"""Issue 13's fault suite, the outbound half: a real server process is killed (kill -9) at each
step of sending a message through the outbox, a second process starts on the same database, and
every message reaches the Twilio REST stand-in exactly once (Twilio's message list is asked
before anything whose outcome is unknown is sent again).

The messages: the model answers a WhatsApp message with take_message (a notice to the owner,
queued by the tool) and then a reply, so each run sends two. The steps, in order:
queued (the owner notice committed, before the send loop sees it), claimed ('sending' committed,
before the request), in flight (Twilio has the request; killed before the answer, with the
message created or not), accepted (Twilio answered, the SID not stored yet), recorded (stored).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.fakes.gemini_server import FakeGemini
from tests.support.fakes.twilio_rest import Hang
from tests.support.faults import CUSTOMER, OWNER, REPLY, Server, model, settings_for
from tests.support.messaging import inbound_params, new_sid, twilio_stand_in
from tests.support.messaging import query, wait_until

FAILPOINTS = ["outbox_queued", "outbox_claimed", "twilio_accepted", "outbox_recorded"]
IN_FLIGHT = ["in_flight_created", "in_flight_not_created"]


@pytest.mark.parametrize("step", FAILPOINTS + IN_FLIGHT)
async def test_kill_9_at_each_step_of_a_send(tmp_path: Path, step: str) -> None:
    async with twilio_stand_in() as twilio, FakeGemini() as gemini:
        gemini.default = model                       # type: ignore[assignment]
        settings = await settings_for(tmp_path, twilio, gemini)
        db = settings.storage.database
        params = inbound_params(new_sid(), CUSTOMER, "Hi, I'm Dana, please call me back")
        in_flight = step in IN_FLIGHT
        if in_flight:
            twilio.script(Hang(20, create=step == "in_flight_created"))
        first = await Server(settings.path, failpoint="" if in_flight else step).start()
        try:
            await first.post(params)
            if in_flight:                             # the request is at Twilio: kill now
                await wait_until(lambda: bool(twilio.creates()), timeout=30)
                await first.kill()
            else:
                assert await first.died(), f"the process did not reach {step}"
        finally:
            await first.kill()
        second = await Server(settings.path).start()
        try:
            await second.post(params)                 # Twilio retries the webhook too
            await wait_until(lambda: len(query(db, "SELECT 1 FROM messages_out")) == 2 and all(
                r["state"] == "sent" for r in query(db, "SELECT state FROM messages_out")),
                timeout=60)
            await asyncio.sleep(1.0)                  # nothing else trickles out
        finally:
            await second.kill()
    sent = sorted((m.to, m.body.split("\n")[0]) for m in twilio.messages)
    assert sent == sorted([(CUSTOMER, REPLY), (f"whatsapp:{OWNER}", "Message from Dana")]), sent
    rows = query(db, "SELECT state, twilio_sid FROM messages_out")
    assert sorted(r["twilio_sid"] for r in rows) == sorted(m.sid for m in twilio.messages)
    assert len(query(db, "SELECT 1 FROM taken_messages")) == 1
