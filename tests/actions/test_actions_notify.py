"""The e-mail outbox against a real SMTP conversation (aiosmtpd on loopback): delivery, a mail
server that is down (delayed, never lost), permanent refusals, the background sender."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path


from appliance.actions.mailer import EmailOutbox, RetryPolicy
from appliance.actions.notify import choose_channel
from appliance.config import SmtpSettings
from appliance.store.db import Database
from tests.support.actions import MAIL_NOW as NOW, Clock, FakeSmtp, free_port, smtp_settings as smtp

POLICY = RetryPolicy(first_s=30, factor=2, max_s=3600, poll_s=0.1, timeout_s=3)


async def test_a_queued_mail_is_delivered(db: Database, smtp_server: FakeSmtp) -> None:
    outbox = EmailOutbox(db, smtp(smtp_server.port), Clock(NOW), POLICY)
    mail_id = await outbox.enqueue("owner@sunrise.example", "Call from Dana", "Body\nline 2",
                                   "summary", dedupe_key="summary:call:1")
    assert await outbox.enqueue("owner@sunrise.example", "again", "x", "summary",
                                dedupe_key="summary:call:1") is None
    assert await outbox.send_due() == 1
    [message] = smtp_server.messages
    assert message["Subject"] == "Call from Dana"
    assert message["To"] == "owner@sunrise.example"
    assert message["From"] == "receptionist@sunrise.example"
    assert f"appliance-mail-{mail_id}" in message["Message-ID"]
    assert message.get_content().replace("\r\n", "\n").strip() == "Body\nline 2"
    row = await db.fetchone("SELECT status, attempts FROM email_outbox")
    assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_a_mail_server_that_is_down_delays_the_mail_but_never_loses_it(
        db: Database) -> None:
    port = free_port()                         # nothing listens there yet
    clock = Clock(NOW)
    outbox = EmailOutbox(db, smtp(port), clock, POLICY)
    await outbox.enqueue("owner@sunrise.example", "Summary", "text", "summary")
    assert await outbox.send_due() == 0
    row = await db.fetchone("SELECT * FROM email_outbox")
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["next_attempt_at"] == "2025-03-16T08:00:30.000Z"
    assert row["last_error"]
    clock.advance(seconds=10)
    assert await outbox.send_due() == 0       # not due yet: no second attempt
    assert (await db.fetchone("SELECT attempts FROM email_outbox"))["attempts"] == 1
    clock.advance(seconds=25)
    assert await outbox.send_due() == 0       # still down: the backoff doubles
    row = await db.fetchone("SELECT * FROM email_outbox")
    assert row["attempts"] == 2 and row["next_attempt_at"] == "2025-03-16T08:01:35.000Z"
    server = FakeSmtp(port).start()
    try:
        clock.advance(minutes=2)
        assert await outbox.send_due() == 1
        assert [m["Subject"] for m in server.messages] == ["Summary"]
    finally:
        server.stop()


async def test_pending_mail_survives_a_restart(tmp_path: Path) -> None:
    port = free_port()
    db = await Database.open(tmp_path / "a.db")
    outbox = EmailOutbox(db, smtp(port), Clock(NOW), POLICY)
    await outbox.enqueue("owner@sunrise.example", "Before the restart", "text")
    await outbox.send_due()
    db.close()
    server = FakeSmtp(port).start()
    try:
        db = await Database.open(tmp_path / "a.db")
        again = EmailOutbox(db, smtp(port), Clock(NOW + timedelta(minutes=1)), POLICY)
        assert await again.send_due() == 1
        assert server.messages[0]["Subject"] == "Before the restart"
        db.close()
    finally:
        server.stop()


async def test_temporary_and_permanent_refusals(db: Database, smtp_server: FakeSmtp) -> None:
    clock = Clock(NOW)
    outbox = EmailOutbox(db, smtp(smtp_server.port), clock, POLICY)
    smtp_server.reject = "451 4.3.0 try again later"
    await outbox.enqueue("owner@sunrise.example", "Temporary", "x")
    assert await outbox.send_due() == 0
    assert (await db.fetchone("SELECT status FROM email_outbox"))["status"] == "pending"
    smtp_server.reject = "550 5.1.1 no such user"
    clock.advance(minutes=1)
    assert await outbox.send_due() == 0
    row = await db.fetchone("SELECT status, last_error FROM email_outbox")
    assert row["status"] == "failed" and "550" in row["last_error"]
    smtp_server.reject = None
    clock.advance(hours=2)
    assert await outbox.send_due() == 0       # a permanent failure is not retried
    assert smtp_server.messages == []


async def test_the_background_sender_delivers_when_the_server_comes_back(db: Database) -> None:
    port = free_port()
    clock = Clock(NOW)
    outbox = EmailOutbox(db, smtp(port), clock, POLICY)
    outbox.start()
    server = None
    try:
        await outbox.enqueue("owner@sunrise.example", "Later", "x")
        for _ in range(100):
            await asyncio.sleep(0.02)
            if (await db.fetchone("SELECT attempts FROM email_outbox"))["attempts"]:
                break
        server = FakeSmtp(port).start()
        clock.advance(seconds=31)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if server.messages and await outbox.pending() == 0:
                break
        assert [m["Subject"] for m in server.messages] == ["Later"]
        assert await outbox.pending() == 0
    finally:
        await outbox.close()
        if server is not None:
            server.stop()


async def test_without_smtp_settings_mail_waits_in_the_outbox(db: Database) -> None:
    outbox = EmailOutbox(db, SmtpSettings("", 587, "", "", "", True), Clock(NOW), POLICY)
    await outbox.enqueue("owner@sunrise.example", "Waits", "x")
    assert await outbox.send_due() == 0
    assert await outbox.pending() == 1


def test_backoff_grows_to_an_hour() -> None:
    delays = [POLICY.delay(n).total_seconds() for n in range(1, 10)]
    assert delays[:4] == [30, 60, 120, 240] and delays[-1] == 3600


def test_channel_choice() -> None:
    assert choose_channel("call", False, True, True) == "sms"
    assert choose_channel("call", True, True, True) == "whatsapp"
    assert choose_channel("whatsapp", False, True, True) == "whatsapp"
    assert choose_channel("sms", True, True, True) == "sms"
    assert choose_channel("call", False, True, False) == "whatsapp"
    assert choose_channel("call", True, False, False) is None
