"""Issue 13, item 4: one character in a name must not stop all e-mail to the owner.

A subject with U+2028 (or anything str.splitlines() splits on) used to make setting the header
raise; the sender retried that row every minute for ever and nothing queued after it went out.
Against a real SMTP conversation (aiosmtpd on loopback)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from appliance.actions.mailer import (
    EmailOutbox,
    OutgoingMail,
    RetryPolicy,
    header_value,
    smtp_send,
)
from appliance.config import SmtpSettings
from appliance.store.db import Database
from tests.support.actions import MAIL_NOW as NOW, Clock, FakeSmtp, smtp_settings as smtp

POLICY = RetryPolicy(first_s=30, factor=2, max_s=3600, poll_s=0.1, timeout_s=3, max_attempts=3)
BREAKS = ["\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def test_every_line_break_splitlines_knows_is_taken_out_of_headers() -> None:
    for ch in BREAKS:
        assert len(f"a{ch}b".splitlines()) == 2       # the premise: each one splits
        assert header_value(f"Message from Dana{ch}Bcc: x@evil.example") == \
            "Message from Dana Bcc: x@evil.example"


async def test_a_poisoned_row_in_the_database_is_sent_and_does_not_block_the_rest(
        db: Database, smtp_server: FakeSmtp) -> None:
    outbox = EmailOutbox(db, smtp(smtp_server.port), Clock(NOW), POLICY)
    # rows as an older version stored them: the subject not cleaned
    for ch in BREAKS:
        await db.execute("INSERT INTO email_outbox(to_addr, subject, body, next_attempt_at, "
                         "created_at) VALUES (?, ?, 'b', ?, ?)",
                         ("owner@sunrise.example", f"Message from Dana{ch}Levi",
                          "2025-03-16T08:00:00.000Z", "2025-03-16T08:00:00.000Z"))
    await outbox.enqueue("owner@sunrise.example", "After the bad ones", "b", "summary")
    assert await outbox.send_due() == len(BREAKS) + 1
    subjects = [m["Subject"] for m in smtp_server.messages]
    assert subjects == ["Message from Dana Levi"] * len(BREAKS) + ["After the bad ones"]


async def test_a_row_that_always_fails_is_given_up_and_the_next_one_goes_out(
        db: Database, smtp_server: FakeSmtp) -> None:
    clock = Clock(NOW)

    def send(settings: SmtpSettings, mail: OutgoingMail, timeout_s: float) -> None:
        if mail.subject == "cursed":
            raise ValueError("something no one foresaw")
        smtp_send(settings, mail, timeout_s)

    outbox = EmailOutbox(db, smtp(smtp_server.port), clock, POLICY, send=send)
    await outbox.enqueue("owner@sunrise.example", "cursed", "b")
    await outbox.enqueue("owner@sunrise.example", "fine", "b")
    assert await outbox.send_due() == 1                 # the second is not held up
    assert [m["Subject"] for m in smtp_server.messages] == ["fine"]
    for _ in range(POLICY.max_attempts):
        clock.now += timedelta(hours=2)
        await outbox.send_due()
    rows = await db.fetchall("SELECT subject, status, attempts FROM email_outbox ORDER BY id")
    assert [tuple(r) for r in rows] == [("cursed", "failed", POLICY.max_attempts),
                                        ("fine", "sent", 1)]
    assert await outbox.next_due_in() is None           # nothing left to retry for ever


async def test_the_attempt_limit_comes_from_the_security_section(tmp_path: Path) -> None:
    from appliance.actions.services import ActionServices
    from tests.support.actions import action_settings

    settings = action_settings(tmp_path, sections={"security": {"mail_attempts": "5"}})
    database = await Database.open(settings.storage.database)
    try:
        services = ActionServices.build(settings, database)
        assert services.outbound.email.policy.max_attempts == 5
    finally:
        database.close()
