"""The outbox: every outbound WhatsApp/SMS message goes through the `messages_out` table and is
sent from here with the twilio library's asyncio client.

- Order: only the oldest unfinished row of a customer may go out, so a customer's messages
  leave in the order they were written; customers are served concurrently.
- Retries: a failure that certainly created nothing (connection refused, 429, 401) is retried
  with exponential backoff and jitter, up to ``RetryPolicy.max_attempts``.
- Never twice: a row is marked 'sending' (committed) before the request. When the answer is
  lost - timeout, dropped connection, 5xx, or the process died mid-request ('sending' found at
  start-up) - the row becomes 'unknown' and is never blindly sent again: Twilio's message list
  (same To/From, created since the attempt, same body, SID not already ours) is asked first.
  Found: the SID is adopted. Not found: sent again. The lookup failing: asked again later.
  The status callback URL carries the row id (``/message-status?out=ID``), so a callback for
  a message whose API answer was lost also settles the row.
- Twilio error 63016 (WhatsApp, outside the 24-hour window) switches the row to the configured
  template; without one the row fails with the reason. Other 4xx errors fail the row.
- Restart: rows 'pending' and 'unknown' are picked up again; nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from twilio.rest import Client

from .. import failpoints
from ..config import Settings
from ..logs import log_context, mask_phone
from ..store.db import Database
from . import store
from .failures import RetryPolicy, classify_failure
from .rows import OutRow
from .twilio_rest import make_client
from .format import render

log = logging.getLogger(__name__)
@dataclass(frozen=True)
class OutboxOptions:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    request_timeout_s: float = 20.0      # one REST request; past it the outcome is unknown
    concurrency: int = 4                 # requests in flight (different customers)
    poll_s: float = 30.0                 # look at the table at least this often
    lookback_s: float = 300.0            # clock skew allowed when matching Twilio's list


class Outbox:
    def __init__(self, settings: Settings, db: Database, options: OutboxOptions = OutboxOptions(),
                 *, clock: Callable[[], datetime] = store.utcnow) -> None:
        self.settings = settings
        self.db = db
        self.options = options
        self._clock = clock
        self._template_sid = settings.messaging.whatsapp_template_sid
        public = settings.server.public_url
        self._callback_base = f"{public}/message-status" if public else ""
        self._client: Client | None = None
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._busy: set[str] = set()
        self._sem = asyncio.Semaphore(options.concurrency)

    @property
    def can_send(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        self._client = make_client(self.settings, self.options.request_timeout_s)
        if self._client is None:
            log.warning("outbox: [twilio] account_sid or TWILIO_AUTH_TOKEN missing; messages "
                        "are kept and sent once they are configured")
        # The lookup waits a moment: Twilio's list may lag a message it has just accepted.
        look_at = self._clock() + timedelta(seconds=self.options.retry.base_s)
        resumed = await self.db.write(lambda c: store.resume_in_flight(c, look_at))
        if resumed:
            log.warning("outbox: %d message(s) were in flight when the process stopped; "
                        "checking Twilio before sending any of them again", resumed)
        self._loop_task = asyncio.create_task(self._run(), name="messaging-outbox")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = None
        self._tasks.clear()
        self._busy.clear()
        if self._client is not None:
            await self._client.http_client.close()  # type: ignore[attr-defined]
            self._client = None

    def notify(self) -> None:
        """Something was queued or changed: look at the table now."""
        self._wake.set()

    async def enqueue(self, phone: str, channel: str, text: str, *,
                      purpose: str = "proactive", from_address: str = "",
                      dedupe_key: str | None = None) -> list[int]:
        """Queue a message nobody asked for (a reminder, a note to the owner): formatted for
        ``channel`` ("whatsapp" or "sms") like a reply, sent in order after anything already
        queued for ``phone``, from ``[messaging] whatsapp_from`` / ``sms_from`` unless
        ``from_address`` is given. Outside WhatsApp's 24-hour window it goes out as the
        configured template, or fails with the reason (see window.py). With ``dedupe_key``
        it is queued once: a second call with the same key queues nothing."""
        phone = phone.removeprefix("whatsapp:")
        if channel not in ("whatsapp", "sms"):
            raise ValueError(f"channel must be whatsapp or sms, not {channel!r}")
        m = self.settings.messaging
        sender = from_address or (m.whatsapp_from if channel == "whatsapp" else m.sms_from)
        if not sender:
            raise ValueError(f"no sender: set [messaging] "
                             f"{'whatsapp_from' if channel == 'whatsapp' else 'sms_from'}")
        if channel == "whatsapp" and not sender.startswith("whatsapp:"):
            sender = f"whatsapp:{sender}"
        to = f"whatsapp:{phone}" if channel == "whatsapp" else phone
        bodies = render(channel, text)
        if not bodies:
            raise ValueError("nothing to send: the text is empty")
        ids = await self.db.write(lambda c: store.enqueue(
            c, channel=channel, phone=phone, to_address=to, from_address=sender, bodies=bodies,
            purpose=purpose, now=self._clock(), dedupe_key=dedupe_key))
        failpoints.hit("outbox_queued")
        self.notify()
        return ids

    async def on_status(self, sid: str, status: str, error_code: int | None,
                        out_hint: int | None) -> store.StatusOutcome:
        outcome = await self.db.write(lambda c: store.apply_status(
            c, sid, status, error_code, out_hint, self._template_sid, self._clock()))
        if outcome.template_queued:
            log.warning("message %s failed outside WhatsApp's 24-hour window; template queued",
                        sid)
        self.notify()
        return outcome

    # -- the loop ------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self._dispatch()
            except Exception:  # noqa: BLE001 - a bad row or a db hiccup must not stop the outbox
                log.exception("outbox: dispatch failed; trying again shortly")
                wait = min(self.options.poll_s, 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _dispatch(self) -> float:
        """Start a send for every customer whose next message is due; seconds to the next."""
        if self._client is None:
            return self.options.poll_s
        rows = await self.db.read(store.heads)
        now = self._clock()
        wait = self.options.poll_s
        for row in rows:
            if row.phone in self._busy:
                continue
            if row.state == "sending":
                await self._expire_if_stale(row, now)
                continue
            due = store.parse_iso(row.next_attempt_at) or now
            if due > now:
                wait = min(wait, (due - now).total_seconds())
                continue
            self._busy.add(row.phone)
            task = asyncio.create_task(self._process(row), name=f"outbox-{row.id}")
            self._tasks.add(task)
            task.add_done_callback(self._finished(row.phone))
        return max(wait, 0.005)

    async def _expire_if_stale(self, row: OutRow, now: datetime) -> None:
        """'sending' with no attempt of ours running: past the request timeout, it is stale."""
        started = store.parse_iso(row.attempt_started_at)
        if started is not None and now - started < timedelta(
                seconds=2 * self.options.request_timeout_s):
            return
        look_at = now + timedelta(seconds=self.options.retry.base_s)
        if await self.db.write(lambda c: store.expire_sending(c, row.id, look_at)):
            log.warning("message %d to %s was left 'sending'; checking Twilio before any retry",
                        row.id, mask_phone(row.phone))
            self.notify()

    def _finished(self, phone: str) -> Callable[[asyncio.Task], None]:
        def done(task: asyncio.Task) -> None:
            self._tasks.discard(task)
            self._busy.discard(phone)
            if not task.cancelled() and task.exception() is not None:
                log.error("outbox: send task failed", exc_info=task.exception())
            self.notify()
        return done

    async def _process(self, row: OutRow) -> None:
        async with self._sem:
            with log_context(row.log_id):
                if row.state == "unknown":
                    await self._reconcile(row)
                else:
                    await self._send(row)

    # -- one attempt ---------------------------------------------------------------------------
    async def _send(self, row: OutRow) -> None:
        assert self._client is not None
        allowed = self.settings.security.allowed_prefixes
        claim = await self.db.write(lambda c: store.claim(c, row.id, self._clock(),
                                                          self._template_sid, allowed))
        job = claim.row
        failpoints.hit("outbox_claimed")
        if job is None:
            if claim.skipped and claim.skipped != "no longer pending":
                log.warning("message %d to %s not sent: %s", row.id, mask_phone(row.phone),
                            claim.skipped)
            return
        kwargs: dict[str, Any] = {"to": job.to_address, "from_": job.from_address}
        if job.content_sid:
            kwargs["content_sid"] = job.content_sid
        else:
            kwargs["body"] = job.body
        if self._callback_base:
            kwargs["status_callback"] = f"{self._callback_base}?out={job.id}"
        try:
            message = await asyncio.wait_for(self._client.messages.create_async(**kwargs),
                                             self.options.request_timeout_s)
        except Exception as exc:  # noqa: BLE001 - classified below; CancelledError passes
            await self._failed(job, exc)
            return
        failpoints.hit("twilio_accepted")
        await self.db.write(lambda c: store.mark_accepted(c, job.id, message.sid,
                                                          message.status, self._clock()))
        failpoints.hit("outbox_recorded")
        log.info("message %d part %d (%s) to %s accepted by Twilio as %s%s", job.id, job.part,
                 job.channel, mask_phone(job.phone), message.sid,
                 " (template)" if job.content_sid else "")

    async def _failed(self, job: OutRow, exc: BaseException) -> None:
        failure = classify_failure(exc, job, self._template_sid)
        now = self._clock()
        policy = self.options.retry
        if failure.action == "template":
            log.warning("message %d: %s; sending template %s instead", job.id, failure.message,
                        self._template_sid)
            await self.db.write(lambda c: store.use_template(
                c, job.id, self._template_sid, failure.message, failure.code, now))
            return
        if failure.action == "failed" or (failure.action == "retry"
                                          and job.attempts >= policy.max_attempts):
            reason = failure.message if failure.action == "failed" else \
                f"gave up after {job.attempts} attempts: {failure.message}"
            log.error("message %d to %s failed: %s", job.id, mask_phone(job.phone), reason)
            await self.db.write(lambda c: store.mark_failed(c, job.id, reason, failure.code, now))
            return
        state = "pending" if failure.action == "retry" else "unknown"
        next_at = now + timedelta(seconds=policy.delay_s(job.attempts))
        log.warning("message %d attempt %d: %s; %s in %.1f s", job.id, job.attempts,
                    failure.message, "retrying" if state == "pending" else
                    "outcome unknown, checking Twilio before any retry",
                    (next_at - now).total_seconds())
        await self.db.write(lambda c: store.mark_retry(c, job.id, state, failure.message,
                                                       failure.code, next_at, now))

    async def _reconcile(self, row: OutRow) -> None:
        """An 'unknown' row: does Twilio have it? Adopt its SID, or send it again."""
        assert self._client is not None
        policy = self.options.retry
        started = store.parse_iso(row.attempt_started_at) or self._clock()
        since = started - timedelta(seconds=self.options.lookback_s)
        try:
            page = await asyncio.wait_for(
                self._client.messages.page_async(to=row.to_address, from_=row.from_address,
                                                 page_size=50),
                self.options.request_timeout_s)
            found = [m for m in page if _same_message(m, row, since)]
        except Exception as exc:  # noqa: BLE001 - ask again later; CancelledError passes
            now = self._clock()
            next_at = now + timedelta(seconds=policy.delay_s(row.attempts))
            reason = f"lookup failed: {type(exc).__name__}: {exc}"
            log.warning("message %d: %s; asking Twilio again in %.1f s", row.id, reason,
                        (next_at - now).total_seconds())
            await self.db.write(lambda c: store.mark_retry(
                c, row.id, "unknown", reason, None, next_at, now))
            return
        taken = await self.db.read(lambda c: store.sids_taken(c, [m.sid for m in found]))
        match = next((m for m in sorted(found, key=_created) if m.sid not in taken), None)
        now = self._clock()
        if match is not None:
            log.info("message %d: Twilio already has it as %s; not sending it again", row.id,
                     match.sid)
            await self.db.write(lambda c: store.mark_accepted(c, row.id, match.sid,
                                                              match.status, now))
        elif row.attempts >= policy.max_attempts:
            reason = f"gave up after {row.attempts} attempts (last outcome unknown, not in " \
                     "Twilio's list)"
            log.error("message %d to %s failed: %s", row.id, mask_phone(row.phone), reason)
            await self.db.write(lambda c: store.mark_failed(c, row.id, reason, None, now))
        else:
            log.info("message %d: not in Twilio's list; sending it again", row.id)
            await self.db.write(lambda c: store.mark_retry(
                c, row.id, "pending", "not found at Twilio after an unknown outcome", None, now,
                now))


def _created(message: Any) -> datetime:
    return message.date_created or datetime.min.replace(tzinfo=store.utcnow().tzinfo)


def _same_message(message: Any, row: OutRow, since: datetime) -> bool:
    if message.to != row.to_address:
        return False
    if message.date_created is not None and message.date_created < since:
        return False
    if row.content_sid:  # a template's body is the rendered template, not ours
        return True
    return (message.body or "").strip() == row.body.strip()
