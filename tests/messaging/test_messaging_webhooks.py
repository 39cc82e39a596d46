"""/message and /message-status at the edge: forged signatures, missing fields, an empty body,
a huge body, unknown media types, retried webhooks, status callbacks. Each bad request gets a
clear answer (or a 403) and leaves nothing written."""

from __future__ import annotations


import pytest

from tests.support.messaging import (
    AUTH_TOKEN,
    PUBLIC_URL,
    Harness,
    inbound_params,
    new_sid,
    nothing_written,
    sign,
)

CUSTOMER_WA = "whatsapp:+972501234567"
CUSTOMER_SMS = "+972541234567"


async def test_forged_signature_is_refused(harness: Harness) -> None:
    params = inbound_params(new_sid(), CUSTOMER_WA, "hello")
    for signature in ("forged", sign("/message", params, token="another-token"),
                      sign("/message", {**params, "Body": "something else"}),
                      sign("/other-path", params)):
        resp = await harness.post("/message", params, signature=signature)
        assert resp.status == 403
    resp = await harness.post("/message", params, signed=False)
    assert resp.status == 403
    # Signed over the local address instead of the public URL: refused as well.
    from twilio.request_validator import RequestValidator

    local = RequestValidator(AUTH_TOKEN).compute_signature(harness.base_url + "/message", params)
    assert (await harness.post("/message", params, signature=local)).status == 403
    await harness.settle(2)
    assert nothing_written(harness)
    assert harness.engine.received == [] and harness.fake.requests == []


@pytest.mark.parametrize("drop, reason", [
    ("MessageSid", "MessageSid missing"), ("From", "From missing"), ("To", "To missing"),
])
async def test_missing_fields_get_400(harness: Harness, drop: str, reason: str) -> None:
    params = inbound_params(new_sid(), CUSTOMER_WA, "hello")
    del params[drop]
    resp = await harness.post("/message", params)
    assert resp.status == 400 and (await resp.text()).strip() == reason
    assert nothing_written(harness)


async def test_malformed_fields_get_400(harness: Harness) -> None:
    for change, reason in [({"From": "whatsapp:Dana"}, "From is not a phone number"),
                           ({"NumMedia": "2"}, "MediaUrl0 missing"),
                           ({"NumMedia": "many"}, "NumMedia is not a number"),
                           ({"MessageSid": "<script>"}, "MessageSid malformed")]:
        params = {**inbound_params(new_sid(), CUSTOMER_WA, "hello"), **change}
        resp = await harness.post("/message", params)
        assert resp.status == 400 and (await resp.text()).strip() == reason
    assert nothing_written(harness)


async def test_empty_body(harness: Harness) -> None:
    # Signed (the signature of no parameters is the URL alone): a clear 400.
    resp = await harness.post("/message", {}, data=b"")
    assert resp.status == 400 and (await resp.text()).strip() == "MessageSid missing"
    # Unsigned: 403, before anything is looked at.
    assert (await harness.post("/message", None, data=b"", signed=False)).status == 403
    assert nothing_written(harness)


async def test_huge_body_is_refused(harness: Harness) -> None:
    params = inbound_params(new_sid(), CUSTOMER_WA, "x" * (2 * 1024 * 1024))
    resp = await harness.post("/message", params)
    assert resp.status == 413
    # Under aiohttp's 1 MiB limit but a Body Twilio would never send: 413 with the reason.
    params = inbound_params(new_sid(), CUSTOMER_WA, "x" * 20_000)
    resp = await harness.post("/message", params)
    assert resp.status == 413 and "Body longer than" in await resp.text()
    assert nothing_written(harness)


async def test_unknown_media_types_get_a_polite_answer_and_are_recorded(harness: Harness) -> None:
    fake = harness.fake
    media = (
        (fake.add_media("image/jpeg", b"\xff\xd8jpeg"), "image/jpeg"),
        (fake.add_media("application/pdf", b"%PDF"), "application/pdf"),
        (fake.add_media("video/mp4", b"mp4"), "video/mp4"),
        (fake.add_media("application/x-strange", b"?"), "application/x-strange"),
        (fake.add_media("text/vcard", b"BEGIN:VCARD"), "text/vcard"),
    )
    sid = await harness.send(CUSTOMER_WA, "", media=media)
    await harness.settle()
    (msg,) = harness.rows("SELECT * FROM messages_in")
    assert (msg["message_sid"], msg["state"], msg["kind"], msg["num_media"]) == \
        (sid, "replied", "media", 5)
    recorded = harness.rows("SELECT position, content_type, kind, status, detail FROM "
                            "message_media ORDER BY position")
    assert [(r["content_type"], r["kind"], r["status"]) for r in recorded] == [
        ("image/jpeg", "image", "unsupported"), ("application/pdf", "document", "unsupported"),
        ("video/mp4", "video", "unsupported"),
        ("application/x-strange", "document", "unsupported"),
        ("text/vcard", "document", "unsupported")]
    assert harness.engine.received == []          # nothing to ask the model about
    (sent,) = harness.fake.messages
    assert "can't open images" in sent.body and "voice messages" in sent.body
    assert not any(r.path.startswith("/2010-04-01/Accounts/") and "/Media/" in r.path
                   for r in harness.fake.requests)   # never downloaded


async def test_media_with_a_caption_answers_the_caption_and_says_what_it_cannot_see(
        harness: Harness) -> None:
    url = harness.fake.add_media("image/png", b"png")
    await harness.send(CUSTOMER_WA, "Is this part in stock?", media=((url, "image/png"),))
    await harness.settle()
    assert [r.text for r in harness.engine.received] == ["Is this part in stock?"]
    (sent,) = harness.fake.messages
    assert sent.body.startswith("Sorry, I can't open images")
    assert sent.body.endswith("Reply to: Is this part in stock?")


async def test_a_retried_webhook_is_stored_and_answered_once(harness: Harness) -> None:
    sid = new_sid()
    for _ in range(3):
        await harness.send(CUSTOMER_SMS, "hello", sid=sid)
    await harness.settle()
    for _ in range(2):  # retries after the answer went out
        await harness.send(CUSTOMER_SMS, "hello", sid=sid)
    await harness.settle()
    assert harness.count("messages_in") == 1 and harness.count("messages_out") == 1
    assert len(harness.fake.messages) == 1 and len(harness.engine.received) == 1


async def test_status_callbacks_record_delivery(harness: Harness) -> None:
    await harness.send(CUSTOMER_WA, "hello")
    await harness.settle()
    (sent,) = harness.fake.messages
    assert sent.status_callback.startswith(PUBLIC_URL + "/message-status?out=")
    assert await harness.fake.send_statuses(harness.base_url, "sent") == [200]
    assert await harness.fake.send_statuses(harness.base_url, "delivered") == [200]
    assert await harness.fake.send_statuses(harness.base_url, "read") == [200]
    assert await harness.fake.send_statuses(harness.base_url, "sent") == [200]  # late, out of order
    (row,) = harness.rows("SELECT state, twilio_status, twilio_sid FROM messages_out")
    assert (row["state"], row["twilio_sid"]) == ("read", sent.sid)
    events = harness.rows("SELECT status FROM message_status_events ORDER BY id")
    assert [e["status"] for e in events] == ["sent", "delivered", "read", "sent"]


async def test_status_callback_failures_are_recorded(harness: Harness) -> None:
    await harness.send(CUSTOMER_SMS, "hello")
    await harness.settle()
    assert await harness.fake.send_statuses(harness.base_url, "undelivered",
                                            error_code=30003) == [200]
    (row,) = harness.rows("SELECT state, error_code FROM messages_out")
    assert (row["state"], row["error_code"]) == ("undelivered", 30003)


async def test_bad_status_callbacks(harness: Harness) -> None:
    params = {"MessageSid": new_sid(), "MessageStatus": "delivered"}
    assert (await harness.post("/message-status", params, signature="forged")).status == 403
    for bad, reason in [({"MessageStatus": "delivered"}, "MessageSid missing"),
                        ({"MessageSid": new_sid()}, "MessageStatus missing"),
                        ({**params, "ErrorCode": "x"}, "ErrorCode is not a number")]:
        resp = await harness.post("/message-status", bad)
        assert resp.status == 400 and (await resp.text()).strip() == reason
    assert harness.count("message_status_events") == 0
    # A SID that is not ours: acknowledged (so Twilio stops), recorded, nothing changed.
    resp = await harness.post("/message-status", params)
    assert resp.status == 200
    (event,) = harness.rows("SELECT out_id, status FROM message_status_events")
    assert event == {"out_id": None, "status": "delivered"}
