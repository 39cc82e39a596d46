"""Issue 13, item 14: a row left 'sending' (its attempt died without a word) used to block that
customer's queue until a restart. Now it is expired to 'unknown', looked up at Twilio and
adopted or sent again, and the replies behind it go out - no restart. And an inbound message
is committed with synchronous = FULL before Twilio gets its 200."""

from __future__ import annotations

from pathlib import Path

from appliance.store.db import Database
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.messaging import running, twilio_stand_in

WA = "whatsapp:+972501234567"


async def test_a_stale_sending_row_no_longer_blocks_the_queue(tmp_path: Path) -> None:
    fake: FakeTwilio
    async with twilio_stand_in() as fake, running(tmp_path, fake) as h:
        h.execute("INSERT INTO messages_out (part, purpose, channel, phone, to_address, "
                  "from_address, body, state, attempts, attempt_started_at, "
                  "next_attempt_at, created_at, updated_at) VALUES (0, 'proactive', "
                  "'whatsapp', '+972501234567', ?, 'whatsapp:+14155238886', 'earlier note', "
                  "'sending', 1, '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z', "
                  "'2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z')", (WA,))
        await h.send(WA, "hello")
        await h.wait_for(lambda: len(fake.messages) == 2, timeout=15,
                         what="both messages sent")
        assert [m.body for m in fake.messages] == ["earlier note", "Reply to: hello"]
        lookups = [r for r in fake.requests if r.method == "GET"]
        assert len(lookups) == 1                  # reconciled first, not blindly re-sent
        # the stand-in has a message as soon as it is POSTed; its row says 'sent' a moment later
        await h.wait_for(lambda: h.rows("SELECT state FROM messages_out ORDER BY id")
                         == [{"state": "sent"}, {"state": "sent"}], timeout=15,
                         what="both rows marked sent")


async def test_write_durable_syncs_fully_and_goes_back_to_normal(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    try:
        during = await db.write_durable(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        after = await db.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        assert (during, after) == (2, 1)              # FULL, then NORMAL
    finally:
        db.close()
