"""Whole conversations through the real routes, the real outbox and the real twilio library
(against the loopback stand-in): bursts, formatting per channel, the shared customer, opt-out,
the 24-hour window and engine failures."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import timedelta
from pathlib import Path


from appliance.messaging.store import iso, utcnow
from tests.support.fakes.twilio_rest import Fail, FakeTwilio
from tests.support.messaging import (
    FAST,
    TEMPLATE_SID,
    WA_FROM,
    Harness,
    ScriptedEngine,
    new_sid,
)

WA = "whatsapp:+972501234567"
SMS = "+972501234567"       # the same customer, by SMS


async def test_a_burst_from_several_customers_gets_exactly_one_reply_each_in_order(
        harness: Harness) -> None:
    rng = random.Random(7)
    harness.engine.delay_s = lambda text: rng.uniform(0, 0.03)
    # Twilio trouble on the way out too: rate limits and a 500 (outcome unknown).
    harness.fake.script(Fail(429), Fail(500), Fail(429))
    customers = ([f"whatsapp:+97250000000{i}" for i in range(4)]
                 + [f"+97254000000{i}" for i in range(3)])
    per_customer = 5

    async def customer(address: str) -> list[str]:
        bodies = []
        sent_sids = []
        for k in range(per_customer):
            sid, body = new_sid(), f"{address[-3:]} question {k}"
            # Twilio's request and a duplicate delivery of it, at the same moment.
            await asyncio.gather(harness.send(address, body, sid=sid),
                                 harness.send(address, body, sid=sid))
            bodies.append(body)
            sent_sids.append((sid, body))
            await asyncio.sleep(rng.uniform(0, 0.01))
        for sid, body in sent_sids[:2]:       # late retries of early messages
            await harness.send(address, body, sid=sid)
        return bodies

    results = await asyncio.gather(*(customer(c) for c in customers))
    await harness.settle(30)

    for address, bodies in zip(customers, results, strict=True):
        assert [m.body for m in harness.fake.sent_to(address)] == \
            [f"Reply to: {b}" for b in bodies], address
    total = len(customers) * per_customer
    assert len(harness.fake.messages) == total
    assert len(harness.engine.received) == total
    assert len(harness.engine.heard) == total
    inbound = harness.rows("SELECT id, state, kind FROM messages_in")
    assert len(inbound) == total and {(r["state"], r["kind"]) for r in inbound} == \
        {("replied", "text")}
    outbound = harness.rows("SELECT in_id, state, twilio_sid FROM messages_out")
    assert len(outbound) == total
    assert {r["state"] for r in outbound} == {"sent"}
    assert sorted(r["in_id"] for r in outbound) == sorted(r["id"] for r in inbound)
    assert {r["twilio_sid"] for r in outbound} == {m.sid for m in harness.fake.messages}
    # 429s were retried, the 500 was looked up in Twilio's list before sending again
    assert len(harness.fake.creates()) == total + 3
    assert any(r.method == "GET" for r in harness.fake.requests)


async def test_each_channel_gets_its_own_formatting(harness: Harness) -> None:
    harness.engine.respond = lambda text: ("**Sure!** We're open *Sunday–Thursday*:\n\n"
                                           "* 9:00–18:00\n* Friday 9:00–13:00 😊")
    await harness.send(WA, "When are you open?")
    await harness.settle()
    await harness.send(SMS, "When are you open?")
    await harness.settle()
    wa, sms = harness.fake.messages
    assert wa.to == WA and wa.from_ == WA_FROM
    assert wa.body == ("*Sure!* We're open _Sunday–Thursday_:\n\n"
                       "- 9:00–18:00\n- Friday 9:00–13:00 😊")
    assert sms.to == SMS and sms.from_ == "+14155550100"
    assert sms.body == "Sure! We're open Sunday-Thursday:\n\n- 9:00-18:00\n- Friday 9:00-13:00"


async def test_a_long_sms_reply_goes_out_in_numbered_parts_in_order(harness: Harness) -> None:
    long_hebrew = " ".join(f"משפט מספר {i} עם מידע חשוב על השירות שלנו." for i in range(12))
    harness.engine.respond = lambda text: long_hebrew
    await harness.send(SMS, "ספרו לי על השירות")
    await harness.settle()
    parts = [m.body for m in harness.fake.messages]
    assert len(parts) > 2
    assert [p.rsplit(" ", 1)[1] for p in parts] == [f"({n}/{len(parts)})"
                                                    for n in range(1, len(parts) + 1)]
    rows = harness.rows("SELECT part, body FROM messages_out ORDER BY id")
    assert [r["part"] for r in rows] == list(range(len(parts)))
    assert [r["body"] for r in rows] == parts


async def test_the_conversation_is_the_customers_not_the_channels(harness: Harness) -> None:
    await harness.send(WA, "Hi, I called yesterday about my fridge")
    await harness.settle()
    await harness.send(SMS, "Any news?")
    await harness.settle()
    assert harness.engine.opened == [("+972501234567", "whatsapp", None),
                                     ("+972501234567", "sms", None)]
    rows = harness.rows("SELECT phone, channel FROM messages_in ORDER BY id")
    assert rows == [{"phone": "+972501234567", "channel": "whatsapp"},
                    {"phone": "+972501234567", "channel": "sms"}]


async def test_whatsapp_stop_is_honoured_confirmed_and_recorded(harness: Harness) -> None:
    await harness.send(WA, "hello")
    await harness.settle()
    await harness.send(WA, "STOP")
    await harness.settle()
    assert harness.rows("SELECT opted_out FROM customers WHERE phone = '+972501234567'") == \
        [{"opted_out": 1}]
    assert harness.rows("SELECT channel, action, keyword FROM message_consent") == \
        [{"channel": "whatsapp", "action": "opt_out", "keyword": "stop"}]
    await harness.send(WA, "are you open on Friday?")
    await harness.send(SMS, "and by SMS?")          # the same customer: opted out everywhere
    await harness.settle()
    assert [r.text for r in harness.engine.received] == ["hello"]
    bodies = [m.body for m in harness.fake.messages]
    assert bodies[0] == "Reply to: hello" and "START" in bodies[1] and len(bodies) == 2
    states = harness.rows("SELECT body, state, kind, error FROM messages_in ORDER BY id")
    assert [(r["state"], r["kind"]) for r in states] == [
        ("replied", "text"), ("replied", "opt_out"), ("ignored", "text"), ("ignored", "text")]
    assert states[2]["error"] == "opted out: not answered"

    await harness.send(WA, "Start")
    await harness.settle()
    await harness.send(WA, "are you open on Friday?")
    await harness.settle()
    assert harness.rows("SELECT opted_out FROM customers") == [{"opted_out": 0}]
    assert [m.body for m in harness.fake.messages][2:] == [
        "Welcome back! You'll get our replies again. How can we help?",
        "Reply to: are you open on Friday?"]


async def test_sms_stop_is_recorded_and_left_to_twilio(harness: Harness) -> None:
    await harness.send(SMS, "Stop")
    await harness.settle()
    assert harness.fake.messages == []   # Twilio answers STOP on SMS itself
    assert harness.rows("SELECT state, kind FROM messages_in") == \
        [{"state": "ignored", "kind": "opt_out"}]
    assert harness.rows("SELECT opted_out FROM customers") == [{"opted_out": 1}]


async def test_replies_still_queued_are_not_sent_after_stop(harness: Harness) -> None:
    await harness.fake.stop()                       # Twilio unreachable for a moment
    await harness.send(WA, "hello")
    await harness.wait_for(lambda: harness.rows(
        "SELECT attempts FROM messages_out WHERE attempts > 0"), what="a failed attempt")
    await harness.send(WA, "stop")
    await harness.wait_for(lambda: harness.count("message_consent") == 1, what="the opt-out")
    await harness.fake.start()
    await harness.settle()
    rows = harness.rows("SELECT purpose, state FROM messages_out ORDER BY id")
    assert rows == [{"purpose": "reply", "state": "cancelled"},
                    {"purpose": "opt_out", "state": "sent"}]
    assert len(harness.fake.messages) == 1 and "START" in harness.fake.messages[0].body


async def _age_whatsapp_window(h: Harness, hours: float) -> None:
    h.execute("UPDATE messages_in SET received_at = ?",
              (iso(utcnow() - timedelta(hours=hours)),))


async def test_outside_the_window_the_template_goes_out(tmp_path: Path,
                                                        fake_twilio: FakeTwilio) -> None:
    h = await Harness(tmp_path, fake_twilio, template_sid=TEMPLATE_SID).start()
    try:
        await h.send(WA, "please tell me when my repair is done")
        await h.settle()
        await _age_whatsapp_window(h, 25)
        await h.channel.outbox.enqueue("+972501234567", "whatsapp", "Your repair is ready!")
        await h.settle()
        last = h.fake.creates()[-1]
        assert last.one("ContentSid") == TEMPLATE_SID and last.one("Body") is None
        row = h.rows("SELECT body, content_sid, state FROM messages_out ORDER BY id DESC")[0]
        assert row == {"body": "Your repair is ready!", "content_sid": TEMPLATE_SID,
                       "state": "sent"}
    finally:
        await h.stop()


async def test_outside_the_window_without_a_template_says_why(harness: Harness) -> None:
    await harness.send(WA, "hello")
    await harness.settle()
    await _age_whatsapp_window(harness, 30)
    await harness.channel.outbox.enqueue(WA, "whatsapp", "Ready!")
    await harness.settle()
    row = harness.rows("SELECT state, error FROM messages_out ORDER BY id DESC")[0]
    assert row["state"] == "failed"
    assert "24-hour window" in row["error"] and "whatsapp_template_sid" in row["error"]
    assert len(harness.fake.creates()) == 1        # only the reply to "hello"


async def test_twilio_63016_switches_to_the_template(tmp_path: Path,
                                                     fake_twilio: FakeTwilio) -> None:
    fake_twilio.outside_window.add(WA)   # Meta's clock says the window is closed
    h = await Harness(tmp_path, fake_twilio, template_sid=TEMPLATE_SID).start()
    try:
        await h.send(WA, "hello")
        await h.settle()
        first, second = h.fake.creates()
        assert first.one("Body") == "Reply to: hello"
        assert second.one("ContentSid") == TEMPLATE_SID
        (row,) = h.rows("SELECT state, content_sid FROM messages_out")
        assert row == {"state": "sent", "content_sid": TEMPLATE_SID}
    finally:
        await h.stop()


async def test_twilio_63016_without_a_template_fails_clearly(harness: Harness) -> None:
    harness.fake.outside_window.add(WA)
    await harness.send(WA, "hello")
    await harness.settle()
    (row,) = harness.rows("SELECT state, error_code, error FROM messages_out")
    assert row["state"] == "failed" and row["error_code"] == 63016
    assert "no template" in row["error"]
    assert len(harness.fake.creates()) == 1


async def test_63016_in_a_status_callback_queues_the_template(tmp_path: Path,
                                                              fake_twilio: FakeTwilio) -> None:
    fake_twilio.outside_window.add(WA)
    fake_twilio.window_error = "async"
    h = await Harness(tmp_path, fake_twilio, template_sid=TEMPLATE_SID).start()
    try:
        await h.send(WA, "hello")
        await h.settle()
        assert await h.fake.play_window_failures(h.base_url) == [200]
        await h.settle()
        rows = h.rows("SELECT purpose, state, content_sid, replaces_id, id FROM messages_out "
                      "ORDER BY id")
        assert [(r["purpose"], r["state"], r["content_sid"]) for r in rows] == [
            ("reply", "failed", None), ("template", "sent", TEMPLATE_SID)]
        assert rows[1]["replaces_id"] == rows[0]["id"]
        # the same callback again does not queue a second template
        await h.fake.send_statuses(h.base_url, "failed", [h.fake.messages[0]], error_code=63016)
        await h.settle()
        assert h.count("messages_out") == 2
    finally:
        await h.stop()


async def test_an_engine_failure_still_gets_an_answer(harness: Harness) -> None:
    harness.engine.fail = RuntimeError("model crashed")
    await harness.send(WA, "hello")
    await harness.settle()
    (sent,) = harness.fake.messages
    assert sent.body.startswith("Sorry, I can't answer right now")
    (row,) = harness.rows("SELECT state, error FROM messages_in")
    assert row["state"] == "replied" and "model crashed" in row["error"]
    assert harness.rows("SELECT purpose FROM messages_out") == [{"purpose": "apology"}]


async def test_a_slow_engine_is_cut_off(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    options = replace(FAST, inbound=replace(FAST.inbound, engine_timeout_s=0.2))
    h = await Harness(tmp_path, fake_twilio, ScriptedEngine(delay_s=3), options=options).start()
    try:
        await h.send("+79161234567", "Здравствуйте, сколько стоит ремонт?")
        await h.settle()
        (sent,) = h.fake.messages
        assert sent.body.startswith("Извините")      # in the customer's language
        assert "engine timeout" in h.rows("SELECT error FROM messages_in")[0]["error"]
    finally:
        await h.stop()


async def test_without_an_engine_the_customer_gets_an_apology(tmp_path: Path,
                                                              fake_twilio: FakeTwilio) -> None:
    h = Harness(tmp_path, fake_twilio)
    h.engine = None
    await h.start()
    try:
        await h.send(WA, "שלום")
        await h.settle()
        (sent,) = h.fake.messages
        assert sent.body.startswith("מצטערים")
        assert h.rows("SELECT error FROM messages_in")[0]["error"] == \
            "no conversation engine loaded"
    finally:
        await h.stop()


async def test_an_empty_message_gets_a_friendly_answer(harness: Harness) -> None:
    await harness.send(WA, "")
    await harness.settle()
    (sent,) = harness.fake.messages
    assert "How can I help?" in sent.body
    assert harness.rows("SELECT kind FROM messages_in") == [{"kind": "empty"}]
    assert harness.engine.received == []
