"""Answering stored inbound messages: one worker per customer, in arrival order.

The webhook only stores the message (state 'received') and wakes the customer's worker. The
worker takes that customer's oldest unanswered message, works out the answer (opt-out words,
voice notes transcribed, other media declined politely, the conversation engine for the text)
and then, in ONE transaction, marks the message 'replied' and writes the answer into the
outbox. So after a crash a message is either unanswered (and answered on start-up) or has its
answer queued - never both, never neither.

The conversation belongs to the customer, not the channel: the engine is opened with the
customer's phone number, so history and the customer record are the ones calls use too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from .. import failpoints
from ..config import Settings
from ..logs import log_context, mask_phone
from ..store.db import Database
from . import format as fmt
from . import inbound_store, media, notices, optout, store
from .rows import Draft, Handled, InboundRow, MediaResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboundOptions:
    engine_timeout_s: float = 90.0   # one answer from the engine, whatever it does inside
    concurrency: int = 4             # messages answered at once (different customers)
    sweep_s: float = 30.0            # look for unanswered messages without a worker this often
    max_attempts: int = 3            # answers started (a crash each time): then an apology


@dataclass(frozen=True)
class Answer:
    handled: Handled
    conversation: Any = None         # to tell the engine the reply went out (mark_heard)
    full_text: str = ""


class Responder:
    """Works out the answer to one inbound message. Writes nothing itself."""

    def __init__(self, settings: Settings, db: Database, engine: Any, stt: Any,
                 fetcher: media.MediaFetcher, options: InboundOptions) -> None:
        self.settings = settings
        self.db = db
        self.engine = engine
        self.stt = stt
        self.fetcher = fetcher
        self.options = options

    def _drafts(self, channel: str, purpose: str, text: str) -> tuple[Draft, ...]:
        return tuple(Draft(purpose, body) for body in fmt.render(channel, text))

    async def answer(self, msg: InboundRow) -> Answer:
        customer = await self.db.read(lambda c: store.customer(c, msg.phone))
        business_language = self.settings.business.language

        def language(heard: str | None = None) -> str:
            return notices.choose_language(msg.body, heard, customer.language, business_language)

        consent = optout.classify(msg.body, msg.channel) if not msg.media else None
        if consent is not None and consent.action == "opt_out":
            # SMS: Twilio answers STOP itself (and would refuse ours), WhatsApp: we confirm.
            replies = (self._drafts(msg.channel, "opt_out", notices.notice("opt_out", language()))
                       if msg.channel == "whatsapp" else ())
            log.info("%s opted out (%s, %r)", mask_phone(msg.phone), msg.channel, consent.keyword)
            return Answer(Handled("replied" if replies else "ignored", "opt_out", msg.body,
                                  language(), replies=replies, consent=consent))
        if consent is not None and consent.action == "opt_in" and customer.opted_out:
            replies = (self._drafts(msg.channel, "opt_in", notices.notice("opt_in", language()))
                       if msg.channel == "whatsapp" else ())
            log.info("%s opted in again (%s)", mask_phone(msg.phone), msg.channel)
            return Answer(Handled("replied" if replies else "ignored", "opt_in", msg.body,
                                  language(), replies=replies, consent=consent))
        if customer.opted_out:
            log.info("message from %s not answered: opted out", mask_phone(msg.phone))
            return Answer(Handled("ignored", "text", msg.body, error="opted out: not answered"))
        limit = self.settings.security.inbound_per_hour
        if await self._answered_last_hour(msg) >= limit:
            log.warning("message from %s not answered: more than %d in an hour",
                        mask_phone(msg.phone), limit)
            return Answer(Handled("ignored", "text", msg.body,
                                  error=f"rate limited: {limit} answered in the last hour"))

        texts, notes, results, heard = await self._media(msg, customer.language)
        body = msg.body.strip()
        user_text = "\n".join(t for t in [body, *texts] if t).strip()
        kind = ("voice" if any(m.kind == "voice" for m in msg.media)
                else "media" if msg.media else "text" if body else "empty")
        if not user_text and not notes:
            notes.append("empty")
        prefix = "\n\n".join(notices.notice(n, language(heard)) for n in dict.fromkeys(notes))
        if not user_text:
            return Answer(Handled("replied", kind, None, language(heard),
                                  replies=self._drafts(msg.channel, "notice", prefix),
                                  media=results))

        reply, conversation, error = await self._ask_engine(msg, user_text, heard)
        if not reply:
            text = notices.notice("unavailable", language(heard))
            return Answer(Handled("replied", kind, user_text, heard, error,
                                  self._drafts(msg.channel, "apology", text), results))
        text = f"{prefix}\n\n{reply}" if prefix else reply
        return Answer(Handled("replied", kind, user_text, heard, None,
                              self._drafts(msg.channel, "reply", text), results),
                      conversation, reply)

    async def _answered_last_hour(self, msg: InboundRow) -> int:
        since = store.iso(store.utcnow() - timedelta(hours=1))
        row = await self.db.fetchone(
            "SELECT count(*) FROM messages_in WHERE phone = ? AND state = 'replied' AND "
            "handled_at >= ?", (msg.phone, since))
        return int(row[0]) if row else 0

    async def _media(self, msg: InboundRow, language_hint: str | None) -> tuple[
            list[str], list[notices.Notice], tuple[MediaResult, ...], str | None]:
        """(transcripts, notices to send, what happened to each item, language heard)"""
        texts: list[str] = []
        notes: list[notices.Notice] = []
        results: list[MediaResult] = []
        heard: str | None = None
        for item in msg.media:
            if item.kind != "voice":
                results.append(MediaResult(item.id, "unsupported",
                                           detail=f"{item.content_type} is not handled"))
                notes.append("unsupported_media")
                log.info("media %d (%s) declined politely", item.position, item.content_type)
                continue
            voice = await media.transcribe_voice(item, self.fetcher, self.stt, language_hint)
            results.append(voice.media)
            if voice.text:
                texts.append(voice.text)
                heard = heard or voice.language
            elif (voice.media.detail or "").startswith("too_long"):
                notes.append("voice_too_long")
            elif voice.media.status == "unusable":
                notes.append("voice_unusable")
            else:
                notes.append("voice_failed")
        return texts, notes, tuple(results), heard

    async def _ask_engine(self, msg: InboundRow, text: str, language: str | None
                          ) -> tuple[str, Any, str | None]:
        """(reply, conversation, error). An empty reply means: send the apology."""
        if self.engine is None:
            return "", None, "no conversation engine loaded"
        try:
            return await asyncio.wait_for(self._converse(msg, text, language),
                                          self.options.engine_timeout_s)
        except TimeoutError:
            log.error("engine gave no answer within %.0f s", self.options.engine_timeout_s)
            return "", None, f"engine timeout after {self.options.engine_timeout_s:.0f} s"
        except Exception as exc:  # noqa: BLE001 - any engine failure becomes an apology
            log.exception("engine failed")
            return "", None, f"engine error: {type(exc).__name__}: {exc}"

    async def _converse(self, msg: InboundRow, text: str, language: str | None
                        ) -> tuple[str, Any, str | None]:
        failpoints.hit("engine_answering")
        conversation = await self.engine.open(msg.phone, msg.channel,
                                              message_sid=msg.message_sid)
        deltas: list[str] = []
        full: str | None = None
        async for event in conversation.reply(text, language=language):
            name = type(event).__name__
            if name == "TextDelta":
                deltas.append(event.text)
            elif name == "ReplyDone":
                full = event.full_text
            elif name == "ActionRequested":
                log.info("engine requested %s (not available on messaging)",
                         getattr(event, "action", event))
            # Filler is for the phone (covering a pause); a message just arrives later.
        reply = (full if full is not None else "".join(deltas)).strip()
        return reply, conversation, None if reply else "engine returned an empty reply"


class InboundWorkers:
    """One asyncio task per customer with unanswered messages; the table is the queue."""

    def __init__(self, db: Database, responder: Responder, on_queued: Callable[[], None],
                 options: InboundOptions, clock: Callable[[], datetime] = store.utcnow) -> None:
        self.db = db
        self.responder = responder
        self._on_queued = on_queued
        self.options = options
        self._clock = clock
        self._workers: dict[str, asyncio.Task] = {}
        self._dirty: set[str] = set()
        self._sem = asyncio.Semaphore(options.concurrency)
        self._sweeper: asyncio.Task | None = None
        self._stopped = False

    async def start(self) -> None:
        phones = await self.db.read(inbound_store.open_phones)
        if phones:
            log.warning("%d customer(s) have messages not answered before the last stop; "
                        "answering them now", len(phones))
        for phone in phones:
            self.notify(phone)
        self._sweeper = asyncio.create_task(self._sweep(), name="messaging-sweep")

    async def stop(self) -> None:
        self._stopped = True
        tasks = [t for t in (self._sweeper, *self._workers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    def notify(self, phone: str) -> None:
        """A message from ``phone`` was stored: make sure its worker runs."""
        if self._stopped:
            return
        self._dirty.add(phone)
        task = self._workers.get(phone)
        if task is None or task.done():
            task = asyncio.create_task(self._work(phone), name="messaging-customer")
            self._workers[phone] = task
            task.add_done_callback(lambda t, p=phone: self._reap(p, t))

    def idle(self) -> bool:
        return not any(not t.done() for t in self._workers.values())

    def _reap(self, phone: str, task: asyncio.Task) -> None:
        if self._workers.get(phone) is task:
            del self._workers[phone]
        if not task.cancelled() and task.exception() is not None:
            log.error("messaging worker stopped", exc_info=task.exception())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.options.sweep_s)
            try:
                phones = await self.db.read(inbound_store.open_phones)
            except Exception:  # noqa: BLE001 - try again at the next sweep
                log.exception("sweep failed")
                continue
            for phone in phones:
                if phone not in self._workers:
                    self.notify(phone)

    async def _work(self, phone: str) -> None:
        while True:
            self._dirty.discard(phone)
            msg = await self.db.read(lambda c: inbound_store.next_received(c, phone))
            if msg is None:
                if phone in self._dirty:
                    continue
                return
            async with self._sem:
                if not await self._handle(msg):
                    return  # the sweep comes back to it

    def _apology(self, msg: InboundRow, error: str) -> Answer:
        text = notices.notice("unavailable", notices.choose_language(
            msg.body, None, None, self.responder.settings.business.language))
        return Answer(Handled("replied", "text", msg.body, error=error,
                              replies=tuple(Draft("apology", b) for b in
                                            fmt.render(msg.channel, text))))

    async def _answer(self, msg: InboundRow) -> Answer:
        """The answer; after `max_attempts` started answers (each ended by a crash), the
        apology instead, so one message cannot crash the box for ever."""
        attempts = await self.db.write_durable(lambda c: inbound_store.start_attempt(c, msg.id))
        failpoints.hit("answer_started")
        if attempts > self.options.max_attempts:
            log.error("message not answered after %d attempts: sending the apology",
                      attempts - 1)
            return self._apology(msg, f"gave up after {attempts - 1} attempts")
        try:
            return await self.responder.answer(msg)
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the customer waiting
            log.exception("answering failed")
            return self._apology(msg, f"internal error: {type(exc).__name__}: {exc}")

    async def _handle(self, msg: InboundRow) -> bool:
        with log_context(msg.message_sid):
            try:
                answer = await self._answer(msg)
            except Exception:  # noqa: BLE001 - left 'received'; answered again by the sweep
                log.exception("could not start answering; will try again")
                return False
            failpoints.hit("answer_ready")
            try:
                written = await self.db.write(
                    lambda c: inbound_store.complete(c, msg, answer.handled, self._clock()))
            except Exception:  # noqa: BLE001 - left 'received'; answered again by the sweep
                log.exception("could not store the answer; will try again")
                return False
            if not written:
                log.warning("message was already answered; this answer is dropped")
                return True
            failpoints.hit("answer_stored")
            h = answer.handled
            log.info("%s message from %s %s: %s, %d message(s) queued%s", msg.channel,
                     mask_phone(msg.phone), h.state, h.kind, len(h.replies),
                     f" ({h.error})" if h.error else "")
            if h.replies:
                self._on_queued()
            if answer.conversation is not None:
                try:
                    await answer.conversation.mark_heard(answer.full_text, interrupted=False)
                except Exception:  # noqa: BLE001 - the reply is queued either way
                    log.exception("engine mark_heard failed")
            return True
