"""The outbox against a misbehaving Twilio: retries with backoff, unknown outcomes looked up
before any new attempt, permanent errors, order per customer, and nothing sent twice."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.fakes.twilio_rest import Drop, Fail, FakeTwilio, Hang
from tests.support.messaging import (
    FAST,
    Harness,
    write_settings,
)

WA = "whatsapp:+972501234567"
SMS = "+972541234567"
OTHER = "+972521234567"


async def test_rate_limits_are_retried_with_backoff(harness: Harness) -> None:
    harness.fake.script(Fail(429), Fail(429))
    await harness.send(SMS, "hello")
    await harness.settle()
    assert [m.body for m in harness.fake.messages] == ["Reply to: hello"]
    assert len(harness.fake.creates()) == 3
    (row,) = harness.rows("SELECT state, attempts FROM messages_out")
    assert row == {"state": "sent", "attempts": 3}


async def test_a_timeout_is_looked_up_not_resent(harness: Harness) -> None:
    # Twilio creates the message but answers after our 1.5 s request timeout.
    harness.fake.script(Hang(3.0, create=True))
    await harness.send(WA, "hello")
    await harness.settle()
    assert len(harness.fake.messages) == 1 and len(harness.fake.creates()) == 1
    (row,) = harness.rows("SELECT state, twilio_sid, attempts FROM messages_out")
    assert row == {"state": "sent", "twilio_sid": harness.fake.messages[0].sid, "attempts": 1}


async def test_a_dropped_connection(harness: Harness) -> None:
    harness.fake.script(Drop(create=True), Drop(create=False))
    await harness.send(WA, "first")
    await harness.settle()
    await harness.send(WA, "second")
    await harness.settle()
    assert [m.body for m in harness.fake.messages] == ["Reply to: first", "Reply to: second"]
    # first: created then dropped -> found in the list; second: dropped before -> sent again
    assert len(harness.fake.creates()) == 3


async def test_a_500_is_looked_up_then_sent_again(harness: Harness) -> None:
    harness.fake.script(Fail(500), Fail(503))
    await harness.send(SMS, "hello")
    await harness.settle()
    assert [m.body for m in harness.fake.messages] == ["Reply to: hello"]
    assert len([r for r in harness.fake.requests if r.method == "GET"]) == 2


async def test_a_permanent_error_fails_the_row_and_the_next_ones_still_go(
        harness: Harness) -> None:
    harness.fake.script(Fail(400, 21211, "Invalid 'To' Phone Number"))
    await harness.send(SMS, "first")
    await harness.settle()
    await harness.send(SMS, "second")
    await harness.settle()
    rows = harness.rows("SELECT state, error_code, error, attempts FROM messages_out "
                        "ORDER BY id")
    assert [(r["state"], r["error_code"], r["attempts"]) for r in rows] == [
        ("failed", 21211, 1), ("sent", None, 1)]
    assert "Invalid 'To' Phone Number" in rows[0]["error"]
    assert [m.body for m in harness.fake.messages] == ["Reply to: second"]


async def test_giving_up_after_max_attempts(harness: Harness) -> None:
    attempts = FAST.outbox.retry.max_attempts
    harness.fake.script(*[Fail(429)] * attempts)
    await harness.send(SMS, "hello")
    await harness.settle()
    (row,) = harness.rows("SELECT state, attempts, error FROM messages_out")
    assert row["state"] == "failed" and row["attempts"] == attempts
    assert row["error"].startswith(f"gave up after {attempts} attempts")
    assert harness.fake.messages == []


async def test_order_per_customer_holds_through_retries(harness: Harness) -> None:
    harness.engine.delay_s = 0
    harness.fake.script(Fail(429), Fail(429), Fail(429))
    await harness.send(SMS, "one")
    await harness.send(SMS, "two")
    await harness.send(SMS, "three")
    await harness.settle()
    assert [m.body for m in harness.fake.messages] == \
        ["Reply to: one", "Reply to: two", "Reply to: three"]


async def test_one_customers_trouble_does_not_hold_up_another(tmp_path: Path,
                                                              fake_twilio: FakeTwilio) -> None:
    slow = replace(FAST, outbox=replace(FAST.outbox, retry=replace(FAST.outbox.retry,
                                                                   base_s=1.0, cap_s=1.0)))
    h = await Harness(tmp_path, fake_twilio, options=slow).start()
    try:
        fake_twilio.script(Fail(429))               # the first customer's reply waits ~1 s
        await h.send(SMS, "hello")
        await h.wait_for(lambda: h.rows("SELECT 1 FROM messages_out WHERE attempts = 1 AND "
                                        "state = 'pending'"), what="the failed attempt")
        await h.send(OTHER, "hi")
        await h.wait_for(lambda: fake_twilio.sent_to(OTHER), timeout=0.9,
                         what="the other customer's reply, before the retry")
        assert fake_twilio.sent_to(SMS) == []
        await h.settle()
        assert len(fake_twilio.sent_to(SMS)) == 1
    finally:
        await h.stop()


async def test_without_credentials_nothing_is_lost(tmp_path: Path,
                                                   fake_twilio: FakeTwilio) -> None:
    h = Harness(tmp_path, fake_twilio)
    h.settings = replace(h.settings, twilio=replace(h.settings.twilio, account_sid=""))
    await h.start()
    try:
        await h.send(SMS, "hello")
        await h.wait_for(lambda: h.count("messages_out") == 1, what="the queued reply")
        await asyncio.sleep(0.3)
        assert h.rows("SELECT state FROM messages_out") == [{"state": "pending"}]
        health = h.components["messaging"]
        assert not health.ok and "account_sid" in health.detail
        assert fake_twilio.requests == []
        # configured and restarted: it goes out
        h.settings = write_settings(tmp_path, fake_twilio.base_url)
        await h.restart()
        await h.settle()
        assert len(fake_twilio.messages) == 1
    finally:
        await h.stop()


async def test_proactive_messages_queue_behind_replies(harness: Harness) -> None:
    harness.fake.script(Fail(429))
    await harness.send(WA, "hello")
    await harness.wait_for(lambda: harness.count("messages_out") == 1, what="the reply")
    await harness.channel.outbox.enqueue("+972501234567", "whatsapp",
                                         "**Your repair is ready**")
    await harness.settle()
    assert [m.body for m in harness.fake.messages] == ["Reply to: hello",
                                                       "*Your repair is ready*"]


async def test_proactive_sms_goes_from_the_configured_number(harness: Harness) -> None:
    ids = await harness.channel.outbox.enqueue(OTHER, "sms", "Reminder: *tomorrow* at 10:00")
    await harness.settle()
    (sent,) = harness.fake.messages
    assert (sent.to, sent.from_, sent.body) == (OTHER, "+14155550100",
                                                "Reminder: tomorrow at 10:00")
    assert harness.rows("SELECT id, purpose, in_id FROM messages_out") == [
        {"id": ids[0], "purpose": "proactive", "in_id": None}]
    with pytest.raises(ValueError):
        await harness.channel.outbox.enqueue(OTHER, "fax", "hello")
    with pytest.raises(ValueError):
        await harness.channel.outbox.enqueue(OTHER, "sms", "   ")
