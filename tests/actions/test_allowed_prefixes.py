"""Issue 13, item 3: outbound WhatsApp/SMS only to the country prefixes the owner configured
([security] allowed_prefixes) - replies through the real messaging app and outbox (fake Twilio
REST on loopback), and what the tools send through `Outbound`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.support.actions import make_harness
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.messaging import running, twilio_stand_in, write_settings

HOME, ABROAD = "whatsapp:+972501234567", "whatsapp:+882161234567"


async def test_replies_go_only_to_allowed_prefixes(tmp_path: Path) -> None:
    fake: FakeTwilio
    async with twilio_stand_in() as fake:
        settings = write_settings(tmp_path, fake.base_url,
                                  extra="[security]\nallowed_prefixes = +972, +1\n")
        async with running(tmp_path, fake, settings=settings) as h:
            await h.send(HOME, "hello")
            await h.send(ABROAD, "hello")
            await h.settle()
            assert [m.to for m in fake.messages] == [HOME]
            # The two conversations are handled concurrently: either reply may be queued first.
            rows = h.rows("SELECT phone, state, error FROM messages_out ORDER BY phone")
            assert [(r["phone"], r["state"]) for r in rows] == [
                ("+882161234567", "failed"), ("+972501234567", "sent")]
            assert "allowed_prefixes" in rows[0]["error"]


async def test_tools_send_nothing_outside_the_allowed_prefixes(tmp_path: Path) -> None:
    now = datetime(2025, 3, 16, 10, 0, tzinfo=ZoneInfo("Asia/Jerusalem"))
    h = await make_harness(tmp_path, now,
                           sections={"security": {"allowed_prefixes": "+972"}})
    try:
        for phone, sent in [("+447700900123", False), ("+972501234567", True)]:
            ctx = await h.context(phone, "call")
            result = await h.run(ctx, "send_me_info", {"kind": "hours"})
            assert ("Sent the" in result) == sent, result
        assert [s.to for s in h.notifier.sent] == ["+972501234567"]
    finally:
        h.close()
