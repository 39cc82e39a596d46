"""The e-mail outbox: mail to the owner is stored first and sent by a background task.

`enqueue()` writes a row to `email_outbox` (at most one per `dedupe_key`); `run()` sends what
is due, one message at a time, with smtplib in a worker thread. A mail server that is down or
slow only delays mail: a temporary failure (connection refused, timeout, 4xx) schedules the
next attempt with exponential backoff (30 s, 1 min, 2 min ... at most 1 h) and the row stays
until it is sent. A permanent refusal (5xx for the recipient or the message) marks the row
failed, with the server's answer, and logs an error - retrying would not help.

Header values (subject, addresses) are made single-line first: a customer's name with a line
separator (U+2028, or anything str.splitlines() splits on) would make the header raise. Any
error building or sending one message only reschedules that row, so the mail behind it still
goes out; after `max_attempts` tries the row is given up (failed, logged).

Each message carries a Message-ID derived from its row, so if the box stops between the
server accepting a message and the row being marked sent, the repeat is recognisable.
"""

from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import sqlite3
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Callable

from ..config import SmtpSettings
from ..store.db import Database
from .calendar import to_stamp

log = logging.getLogger(__name__)


class PermanentMailError(Exception):
    """The server refused the message for good (5xx)."""


@dataclass(frozen=True)
class RetryPolicy:
    first_s: float = 30.0
    factor: float = 2.0
    max_s: float = 3600.0
    poll_s: float = 60.0          # look for due mail at least this often
    timeout_s: float = 20.0       # one SMTP conversation
    max_attempts: int = 8         # then the row is failed ([security] mail_attempts)

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.max_s, self.first_s * self.factor ** max(0,
                                                                                attempts - 1)))


@dataclass(frozen=True)
class OutgoingMail:
    id: int
    to_addr: str
    subject: str
    body: str
    created_at: str
    attempts: int


# Everything str.splitlines() splits on, and the other control characters.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_value(text: str, limit: int = 200) -> str:
    """One line, safe for an e-mail header: line breaks and control characters become spaces."""
    return " ".join(_BREAKS.sub(" ", text).split())[:limit]


# Sends one message, blocking; raises PermanentMailError or any other error (= retry later).
SendFn = Callable[[SmtpSettings, OutgoingMail, float], None]


def smtp_send(smtp: SmtpSettings, mail: OutgoingMail, timeout_s: float) -> None:
    """One SMTP conversation (STARTTLS and login when configured)."""
    message = EmailMessage()
    try:
        message["From"] = header_value(smtp.sender)
        message["To"] = header_value(mail.to_addr)
        message["Subject"] = header_value(mail.subject)
    except (ValueError, TypeError) as exc:       # an unusable address: retrying cannot help
        raise PermanentMailError(f"bad header: {exc}") from None
    message["Message-ID"] = make_msgid(idstring=f"appliance-mail-{mail.id}",
                                       domain=(smtp.sender.rpartition("@")[2] or "appliance"))
    message["Date"] = format_datetime(datetime.fromisoformat(
        mail.created_at.replace("Z", "+00:00")))
    message.set_content(mail.body)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout_s) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username:
                client.login(smtp.username, smtp.password)
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if all(500 <= code < 600 for code in codes):
            raise PermanentMailError(f"recipient refused: {exc.recipients}") from None
        raise
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        if 500 <= exc.smtp_code < 600:
            raise PermanentMailError(f"{exc.smtp_code} {exc.smtp_error!r}") from None
        raise
    except smtplib.SMTPAuthenticationError as exc:
        # A wrong password is a configuration problem: keep the mail, retry after the fix.
        raise ConnectionError(f"SMTP login failed ({exc.smtp_code}); check SMTP_PASSWORD") \
            from None


class EmailOutbox:
    """Durable mail to the owner. `start()` the sender task; `close()` stops it."""

    def __init__(self, db: Database, smtp: SmtpSettings, clock: Callable[[], datetime],
                 policy: RetryPolicy | None = None, send: SendFn = smtp_send) -> None:
        self.db = db
        self.smtp = smtp
        self.clock = clock
        self.policy = policy or RetryPolicy()
        self._send = send
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def configured(self) -> bool:
        return bool(self.smtp.host and self.smtp.sender)

    async def enqueue(self, to_addr: str, subject: str, body: str, reason: str = "",
                      dedupe_key: str | None = None) -> int | None:
        """Store a message; the id, or None when `dedupe_key` was queued before."""
        now = to_stamp(self.clock())

        def tx(conn: sqlite3.Connection) -> int | None:
            cursor = conn.execute(
                "INSERT INTO email_outbox(dedupe_key, to_addr, subject, body, reason, "
                "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(dedupe_key) DO NOTHING",
                (dedupe_key, to_addr, header_value(subject), body, reason, now, now))
            return int(cursor.lastrowid) if cursor.rowcount else None

        mail_id = await self.db.write(tx)
        if mail_id is not None:
            log.info("mail %d queued (%s)%s", mail_id, reason or "-",
                     "" if self.configured else "; [smtp] host/sender not set, it waits")
            self._wake.set()
        return mail_id

    async def send_due(self) -> int:
        """Send every message that is due now; the number sent."""
        if not self.configured:
            return 0
        sent = 0
        while True:
            now = self.clock()
            row = await self.db.fetchone(
                "SELECT id, to_addr, subject, body, created_at, attempts FROM email_outbox "
                "WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT 1",
                (to_stamp(now),))
            if row is None:
                return sent
            mail = OutgoingMail(**dict(row))
            if await self._attempt(mail):
                sent += 1

    async def _attempt(self, mail: OutgoingMail) -> bool:
        attempts = mail.attempts + 1
        try:
            await asyncio.to_thread(self._send, self.smtp, mail, self.policy.timeout_s)
        except PermanentMailError as exc:
            log.error("mail %d refused for good: %s", mail.id, exc)
            await self.db.execute(
                "UPDATE email_outbox SET status = 'failed', attempts = ?, last_error = ? "
                "WHERE id = ?", (attempts, str(exc)[:500], mail.id))
            return False
        except Exception as exc:  # noqa: BLE001 - one bad row must not stop the rest
            if attempts >= self.policy.max_attempts:
                log.error("mail %d given up after %d attempts: %s", mail.id, attempts, exc)
                await self.db.execute(
                    "UPDATE email_outbox SET status = 'failed', attempts = ?, last_error = ? "
                    "WHERE id = ?", (attempts, (str(exc) or type(exc).__name__)[:500], mail.id))
                return False
            delay = self.policy.delay(attempts)
            log.warning("mail %d not sent (attempt %d): %s; next try in %.0f s", mail.id,
                        attempts, exc or type(exc).__name__, delay.total_seconds())
            await self.db.execute(
                "UPDATE email_outbox SET attempts = ?, last_error = ?, next_attempt_at = ? "
                "WHERE id = ?",
                (attempts, (str(exc) or type(exc).__name__)[:500],
                 to_stamp(self.clock() + delay), mail.id))
            return False
        await self.db.execute(
            "UPDATE email_outbox SET status = 'sent', attempts = ?, sent_at = ?, last_error = '' "
            "WHERE id = ?", (attempts, to_stamp(self.clock()), mail.id))
        log.info("mail %d sent (attempt %d)", mail.id, attempts)
        return True

    async def next_due_in(self) -> float | None:
        """Seconds until the next pending message is due (0 if overdue), None if none."""
        row = await self.db.fetchone(
            "SELECT min(next_attempt_at) AS due FROM email_outbox WHERE status = 'pending'")
        if row is None or row["due"] is None:
            return None
        due = datetime.fromisoformat(row["due"].replace("Z", "+00:00"))
        return max(0.0, (due - self.clock()).total_seconds())

    async def run(self) -> None:
        """Forever: send what is due, then sleep until the next is due, a new message
        arrives, or poll_s passes."""
        while True:
            self._wake.clear()
            try:
                await self.send_due()
                wait = await self.next_due_in()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database hiccup must not stop the sender
                log.exception("the e-mail outbox pass failed")
                wait = self.policy.poll_s
            timeout = self.policy.poll_s if wait is None else min(wait, self.policy.poll_s)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, timeout))
            except asyncio.TimeoutError:
                pass

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="email-outbox")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None

    async def pending(self) -> int:
        row = await self.db.fetchone(
            "SELECT count(*) AS n FROM email_outbox WHERE status = 'pending'")
        return int(row["n"]) if row else 0
