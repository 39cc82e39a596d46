"""Issue 13, item 19: the owner cannot be flooded. Messages taken for the owner (take_message,
from any number of customers) and summaries are capped per channel and hour, all customers
together ([security] owner_notices_per_hour); the last one says so, the rest are held - every
message is still stored for the owner."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.support.actions import OWNER_WHATSAPP, make_harness

NOW = datetime(2025, 3, 16, 10, 0, tzinfo=ZoneInfo("Asia/Jerusalem"))


async def test_a_flood_of_messages_reaches_the_owner_capped(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, NOW, sections={"security": {"owner_notices_per_hour": "3"}})
    try:
        for n in range(6):                                  # six different callers
            ctx = await h.context(f"+97250123450{n}", "call")
            result = await h.run(ctx, "take_message", {"message": f"call me back {n}"})
            assert result.startswith("Message saved")
        owner = [s for s in h.notifier.sent if s.to == OWNER_WHATSAPP]
        assert len(owner) == 3
        assert "the most there will be" in owner[-1].body
        assert "the most there will be" not in owner[0].body
        mails = await h.db.fetchall("SELECT body FROM email_outbox ORDER BY id")
        assert len(mails) == 3 and "the most there will be" in mails[-1]["body"]
        assert len(await h.db.fetchall("SELECT 1 FROM taken_messages")) == 6   # all kept
        held = await h.db.fetchall("SELECT channel FROM notify_log WHERE status = 'held'")
        assert sorted(r["channel"] for r in held) == ["email"] * 3 + ["whatsapp"] * 3
        h.clock.advance(hours=1, minutes=1)                 # a new hour: notices again
        ctx = await h.context("+972501234599", "call")
        await h.run(ctx, "take_message", {"message": "later"})
        assert len([s for s in h.notifier.sent if s.to == OWNER_WHATSAPP]) == 4
    finally:
        h.close()
