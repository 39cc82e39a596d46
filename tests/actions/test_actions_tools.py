"""The business tools as the engine runs them (check_args, then the handler), including the
ways a caller or a planted document may try to misuse them."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path

import pytest

from appliance.actions.handover import decide_transfer, operator_answered
from tests.support.actions import JLM, NOW, OPERATOR, OWNER_WHATSAPP, Harness, make_harness

CALLER = "+972501234567"
OTHER = "+972507654321"
ATTACKER_TARGET = "+15558675309"


def recipients(h: Harness) -> set[str]:
    return {s.to for s in h.notifier.sent}


async def test_tools_are_registered_with_their_schemas(h: Harness) -> None:
    names = {t.name for t in h.registry.for_channel("call")}
    assert {"find_free_slots", "book_appointment", "move_appointment", "cancel_appointment",
            "list_my_appointments", "take_message", "send_me_info",
            "transfer_to_human"} <= names
    assert "transfer_to_human" not in {t.name for t in h.registry.for_channel("whatsapp")}
    for tool in h.registry.for_channel("call"):
        props = set(tool.parameters.get("properties", {}))
        # No tool lets the model say who to message, what number to call, or which customer.
        assert not props & {"to", "phone", "number", "recipient", "customer_id", "target"}


async def test_find_then_book_confirms_to_the_caller_by_sms(h: Harness) -> None:
    ctx = await h.context(CALLER)
    found = await h.run(ctx, "find_free_slots", {"when": "tomorrow afternoon"})
    assert "Mon 17 Mar 12:00 (start=2025-03-17T12:00)" in found
    found = await h.run(ctx, "find_free_slots", {"date": "2025-03-17", "earliest": "16:00"})
    assert found.splitlines()[1] == "- Mon 17 Mar 16:00 (start=2025-03-17T16:00)"
    result = await h.run(ctx, "book_appointment", {"start": "2025-03-17T16:00",
                                                   "note": "fridge repair"})
    assert result.startswith("Booked: appointment_id=1, Mon 17 Mar 16:00.")
    assert "sent by SMS" in result
    [sent] = h.notifier.sent
    assert (sent.channel, sent.to, sent.reason) == ("sms", CALLER, "booking_confirmation")
    assert "Mon 17 Mar 16:00" in sent.body and "12 Herzl Street" in sent.body
    listing = await h.run(ctx, "list_my_appointments", {})
    assert "appointment_id=1: Mon 17 Mar 16:00 - fridge repair" in listing


async def test_confirmation_goes_by_whatsapp_to_a_customer_who_wrote_there(h: Harness) -> None:
    ctx = await h.context(CALLER)
    await h.memory.add_turn(ctx.customer.id, "whatsapp", None, "user", "hi")
    await h.run(ctx, "book_appointment", {"start": "2025-03-17T09:00"})
    assert [(s.channel, s.to) for s in h.notifier.sent] == [("whatsapp", CALLER)]


async def test_nothing_free_on_a_holiday_offers_the_nearest_times(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, NOW, appointments={"holidays": "2025-03-17"})
    try:
        ctx = await h.context(CALLER)
        result = await h.run(ctx, "find_free_slots", {"date": "2025-03-17"})
        assert result.startswith("Mon 17 Mar is a holiday. No free times")
        assert "Tue 18 Mar 09:00" in result
        refused = await h.run(ctx, "book_appointment", {"start": "2025-03-17T10:00"})
        assert "closed on Mon 17 Mar (holiday)" in refused
    finally:
        h.close()


async def test_move_and_cancel_without_an_id_act_on_the_only_appointment(h: Harness) -> None:
    ctx = await h.context(CALLER)
    await h.run(ctx, "book_appointment", {"start": "2025-03-17T09:00"})
    moved = await h.run(ctx, "move_appointment", {"new_start": "2025-03-18T11:00"})
    assert moved.startswith("Moved appointment_id=1 from Mon 17 Mar 09:00 to Tue 18 Mar 11:00")
    await h.run(ctx, "book_appointment", {"start": "2025-03-19T09:00"})
    ambiguous = await h.run(ctx, "cancel_appointment", {})
    assert "has 2 appointments; ask which one" in ambiguous
    cancelled = await h.run(ctx, "cancel_appointment", {"appointment_id": 2})
    assert cancelled.startswith("Cancelled appointment_id=2 (Wed 19 Mar 09:00)")
    assert all(s.to == CALLER for s in h.notifier.sent)


async def test_send_me_info_on_text_channels_answers_in_the_chat(h: Harness) -> None:
    ctx = await h.context(CALLER, channel="whatsapp")
    result = await h.run(ctx, "send_me_info", {"kind": "website"})
    assert result == "Put this in your reply:\nhttps://sunrise.example"
    assert h.notifier.sent == []
    hours = await h.run(ctx, "send_me_info", {"kind": "hours"})
    assert "Sun-Thu 09:00-18:00; Fri 09:00-13:00" in hours


async def test_take_message_stores_it_and_notifies_the_owner(h: Harness) -> None:
    ctx = await h.context(CALLER)
    result = await h.run(ctx, "take_message", {"message": "Please call me about the invoice",
                                               "name": "Dana", "urgent": True})
    assert "the owner has been notified" in result
    row = await h.db.fetchone("SELECT * FROM taken_messages")
    assert (row["text"], row["name"], row["urgent"]) == ("Please call me about the invoice",
                                                         "Dana", 1)
    assert (await h.db.fetchone("SELECT name FROM customers"))["name"] == "Dana"
    [whatsapp] = h.notifier.sent
    assert whatsapp.to == OWNER_WHATSAPP and "URGENT Message from Dana" in whatsapp.body
    mail = await h.db.fetchone("SELECT * FROM email_outbox")
    assert mail["to_addr"] == "owner@sunrise.example" and mail["status"] == "pending"


# -- transfer --------------------------------------------------------------------------------

async def test_transfer_within_hours_goes_to_the_operator_only(h: Harness) -> None:
    ctx = await h.context(CALLER)
    result = await h.run(ctx, "transfer_to_human",
                         {"reason": "wants a person", "number": ATTACKER_TARGET,
                          "target": ATTACKER_TARGET})
    assert "transferred to a person" in result
    [action] = ctx.actions
    assert (action.kind, action.target) == ("transfer", OPERATOR)


async def test_outside_hours_the_transfer_becomes_a_message(h: Harness) -> None:
    h.clock.now = datetime(2025, 3, 15, 10, 0, tzinfo=JLM)     # Saturday
    ctx = await h.context(CALLER)
    result = await h.run(ctx, "transfer_to_human", {"reason": "complaint"})
    assert "Nobody can take the call now" in result and "take_message" in result
    assert ctx.actions == []
    log = await h.db.fetchone("SELECT kind, needs_human FROM action_log")
    assert (log["kind"], log["needs_human"]) == ("transfer_refused", 1)
    h.clock.now = datetime(2025, 3, 21, 13, 0, tzinfo=JLM)     # Friday, just after 13:00
    assert not decide_transfer(h.settings, h.clock.now).allowed
    h.clock.now = datetime(2025, 3, 21, 12, 59, tzinfo=JLM)
    assert decide_transfer(h.settings, h.clock.now).allowed


def test_transfer_needs_an_operator_listed_in_config(h: Harness) -> None:
    s = h.settings
    unlisted = dataclasses.replace(s, twilio=dataclasses.replace(s.twilio,
                                                                 transfer_numbers=()))
    assert decide_transfer(unlisted, NOW).reason == "not_listed"
    nobody = dataclasses.replace(s, twilio=dataclasses.replace(s.twilio, operator_number=""))
    assert decide_transfer(nobody, NOW).reason == "no_operator"
    assert operator_answered("completed") and not operator_answered("no-answer")
    assert not operator_answered("busy") and not operator_answered("failed")


# -- misuse ----------------------------------------------------------------------------------

async def test_text_this_other_number_sends_to_the_caller_only(h: Harness) -> None:
    ctx = await h.context(CALLER)
    result = await h.run(ctx, "send_me_info", {"kind": "address", "to": ATTACKER_TARGET,
                                               "phone": ATTACKER_TARGET,
                                               "recipient": ATTACKER_TARGET})
    assert "to the caller's own number" in result
    assert recipients(h) == {CALLER}
    [sent] = h.notifier.sent
    assert "12 Herzl Street" in sent.body and ATTACKER_TARGET not in sent.body
    # Content is the configured address; a kind the schema does not allow is refused.
    refused = await h.run(ctx, "send_me_info", {"kind": "this text: call +15558675309"})
    assert "kind must be one of address, website, hours" in refused


async def test_booking_for_someone_else_books_for_the_caller(h: Harness) -> None:
    other = await h.context(OTHER, channel="whatsapp")
    ctx = await h.context(CALLER)
    await h.run(ctx, "book_appointment", {"start": "2025-03-17T10:00",
                                          "customer_id": other.customer.id, "phone": OTHER})
    row = await h.db.fetchone("SELECT customer_id FROM appointments")
    assert row["customer_id"] == ctx.customer.id
    assert recipients(h) == {CALLER}


async def test_cancel_all_appointments_cancels_nothing_of_anyone_else(h: Harness) -> None:
    others = [await h.context(f"+97250765432{i}", channel="whatsapp") for i in range(3)]
    for i, other in enumerate(others):
        await h.run(other, "book_appointment", {"start": f"2025-03-17T1{i}:00"})
    ctx = await h.context(CALLER)
    await h.run(ctx, "book_appointment", {"start": "2025-03-18T09:00"})
    h.notifier.sent.clear()
    answers = [await h.run(ctx, "cancel_appointment", {"appointment_id": n})
               for n in range(1, 10)]
    assert sum(a.startswith("Cancelled") for a in answers) == 1
    assert all("not one of this customer's" in a for a in answers[:3])
    rows = await h.db.fetchall("SELECT customer_id, status FROM appointments ORDER BY id")
    assert [r["status"] for r in rows] == ["booked", "booked", "booked", "cancelled"]
    assert recipients(h) == {CALLER}
    moved = await h.run(ctx, "move_appointment", {"appointment_id": 1,
                                                  "new_start": "2025-03-19T09:00"})
    assert "not one of this customer's" in moved


async def test_booking_every_slot_is_capped_per_customer(h: Harness) -> None:
    ctx = await h.context(CALLER)
    answers = [await h.run(ctx, "book_appointment", {"start": f"2025-03-17T{9 + i:02d}:00"})
               for i in range(6)]
    assert sum(a.startswith("Booked") for a in answers) == 3
    assert "the most allowed" in answers[3]


async def test_outbound_messages_are_rate_limited_per_customer(h: Harness) -> None:
    ctx = await h.context(CALLER)
    answers = [await h.run(ctx, "send_me_info", {"kind": "address"}) for _ in range(6)]
    assert sum("Sent the address" in a for a in answers) == 3
    assert "too many messages" in answers[3] and "12 Herzl Street" in answers[3]
    assert len(h.notifier.sent) == 3
    # Another customer is not affected; after the window the caller can receive again.
    other = await h.context(OTHER)
    assert "Sent the" in await h.run(other, "send_me_info", {"kind": "website"})
    h.clock.advance(minutes=11)
    assert "Sent the" in await h.run(ctx, "send_me_info", {"kind": "website"})
    statuses = await h.db.fetchall("SELECT status, count(*) AS n FROM notify_log "
                                   "GROUP BY status ORDER BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"rate_limited": 3, "sent": 5}


async def test_message_spam_stores_everything_but_notifies_the_owner_a_few_times(
        h: Harness) -> None:
    ctx = await h.context(CALLER)
    for n in range(6):
        await h.run(ctx, "take_message", {"message": f"message {n}"})
    assert len(await h.db.fetchall("SELECT id FROM taken_messages")) == 6
    # Each notice goes to e-mail and WhatsApp (2 counted messages): 3 per window in all.
    owner_whatsapp = [s for s in h.notifier.sent if s.to == OWNER_WHATSAPP]
    mails = await h.db.fetchall("SELECT id FROM email_outbox")
    assert len(owner_whatsapp) + len(mails) == 3


async def test_opted_out_and_anonymous_callers_get_nothing(h: Harness) -> None:
    ctx = await h.context(CALLER)
    await h.db.execute("UPDATE customers SET opted_out = 1 WHERE id = ?", (ctx.customer.id,))
    ctx.customer = await h.memory.customer(CALLER)
    assert "Could not send it" in await h.run(ctx, "send_me_info", {"kind": "address"})
    anonymous = await h.context("anonymous")
    assert "Could not send it" in await h.run(anonymous, "send_me_info", {"kind": "address"})
    booked = await h.run(anonymous, "book_appointment", {"start": "2025-03-17T09:00"})
    assert "No written confirmation could be sent" in booked
    assert h.notifier.sent == []


async def test_a_failing_sender_does_not_break_the_booking(h: Harness) -> None:
    h.notifier.fail = True
    ctx = await h.context(CALLER)
    result = await h.run(ctx, "book_appointment", {"start": "2025-03-17T09:00"})
    assert result.startswith("Booked") and "No written confirmation" in result
    row = await h.db.fetchone("SELECT status FROM notify_log")
    assert row["status"] == "failed"


async def test_nothing_leaves_the_box_but_to_the_caller_and_the_owner(h: Harness) -> None:
    """A whole hostile session: every tool tried with planted targets."""
    ctx = await h.context(CALLER)
    bad = {"to": ATTACKER_TARGET, "phone": ATTACKER_TARGET, "number": ATTACKER_TARGET,
           "customer_id": 1, "email": "attacker@evil.example"}
    for name, args in (("send_me_info", {"kind": "address"}),
                       ("send_me_info", {"kind": "website"}),
                       ("take_message", {"message": f"forward this to {ATTACKER_TARGET}"}),
                       ("book_appointment", {"start": "2025-03-17T09:00"}),
                       ("transfer_to_human", {"reason": f"dial {ATTACKER_TARGET}"}),
                       ("cancel_appointment", {}),
                       ("send_me_info", {"kind": "hours"})):
        await h.run(ctx, name, {**args, **bad})
    assert recipients(h) <= {CALLER, OWNER_WHATSAPP}
    assert all(a.target == OPERATOR for a in ctx.actions)
    mails = await h.db.fetchall("SELECT to_addr FROM email_outbox")
    assert {m["to_addr"] for m in mails} <= {"owner@sunrise.example"}
    # The attacker's number appears only inside the owner's copy of the message text.
    for sent in h.notifier.sent:
        if sent.to == CALLER:
            assert not re.search(r"\+1555", sent.body)


async def test_an_unanswered_transfer_is_logged_for_the_owner(h: Harness) -> None:
    from appliance.actions.handover import record_dial_result

    ctx = await h.context(CALLER)
    assert await record_dial_result(h.services, ctx.call_id, ctx.customer.id, "completed")
    assert not await record_dial_result(h.services, ctx.call_id, ctx.customer.id, "no-answer")
    rows = await h.db.fetchall("SELECT kind, detail, needs_human FROM action_log")
    assert [(r["kind"], r["detail"], r["needs_human"]) for r in rows] == [
        ("transfer_unanswered", "no-answer", 1)]


async def test_wiring_connects_the_notifier_to_the_messaging_outbox(h: Harness) -> None:
    """Through the real Outbox (a stand-in taking **kwargs once hid a wrong keyword, so no
    confirmation was ever queued)."""
    from appliance.actions.wiring import OutboxNotifier, build_actions
    from appliance.conversation.tools import ToolRegistry
    from appliance.messaging.outbox import Outbox
    from appliance.runtime import Runtime

    with pytest.raises(RuntimeError, match="not running"):
        await OutboxNotifier(h.settings, None).send_text("sms", CALLER, "hi", "info")
    rt = Runtime()
    tools = ToolRegistry.default()
    services = build_actions(rt, h.settings, h.db, Outbox(h.settings, h.db), tools)
    try:
        assert services is not None and "book_appointment" in tools
        notifier = services.outbound.notifier
        await notifier.send_text("whatsapp", CALLER, "hello", "info")
        await notifier.send_text("sms", CALLER, "hello", "booking_confirmation")
        rows = await h.db.fetchall("SELECT channel, phone, to_address, from_address, body, "
                                   "purpose FROM messages_out ORDER BY id")
        assert [dict(r) for r in rows] == [
            {"channel": "whatsapp", "phone": CALLER, "to_address": f"whatsapp:{CALLER}",
             "from_address": "whatsapp:+14155238886", "body": "hello", "purpose": "info"},
            {"channel": "sms", "phone": CALLER, "to_address": CALLER,
             "from_address": "+14155550000", "body": "hello",
             "purpose": "booking_confirmation"}]
    finally:
        await rt.close()
