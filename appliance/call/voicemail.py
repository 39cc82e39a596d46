"""Voicemail: when nobody answers a transfer, or the caller asks for a person out of hours
([call] voicemail = true), the caller's message is recorded by Twilio, fetched, transcribed
on this box and attached to the owner's summary of the call.

1. `twiml(language)`: the voicemail phrase, then <Record> (beep, up to `MAX_LENGTH_S`, # ends)
   whose action is /voicemail/done and whose recordingStatusCallback is /voicemail/recording;
   both are Twilio-signed webhooks (TwilioGuard), like every other.
2. /voicemail/done: Twilio finished recording: thank the caller and hang up.
3. /voicemail/recording (RecordingStatus=completed): download RecordingUrl + ".wav" with the
   account's credentials - only from Twilio itself or the configured API stand-in
   (messaging/media.py's MediaFetcher) - decode (PyAV), transcribe (faster-whisper), store
   it as a message taken on that call (taken_messages, action_log "voicemail"), then send the
   call's summary (`on_voicemail(call_id)`). A recording that cannot be fetched or heard is
   still attached, saying so, with its Twilio URL: nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Protocol

import numpy as np
from aiohttp import web

from ..config import Settings
from ..logs import log_context
from ..messaging.media import MediaError, MediaFetcher, MediaLimits, decode_audio
from ..store.db import Database
from ..stt.whisper import Transcript
from ..telephony import twiml
from ..telephony.guard import TwilioGuard
from ..telephony.signature import signed_url
from .phrases import PhraseBook

log = logging.getLogger(__name__)
MAX_LENGTH_S = 120
XML = "application/xml"
OnVoicemail = Callable[[int], Awaitable[object]]    # call_id -> send the call's summary


class Recognizer(Protocol):
    async def transcribe_async(self, pcm: np.ndarray, language_hint: str | None = None
                               ) -> Transcript: ...


class Voicemail:
    def __init__(self, settings: Settings, db: Database | None, stt: Recognizer | None,
                 phrases: PhraseBook, on_voicemail: OnVoicemail | None = None,
                 fetcher: MediaFetcher | None = None) -> None:
        self.settings, self.db, self.stt, self.phrases = settings, db, stt, phrases
        self.on_voicemail = on_voicemail
        self.guard = TwilioGuard(settings)
        self.fetcher = fetcher or MediaFetcher(settings, MediaLimits())
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.settings.call.voicemail and self.db is not None

    def _url(self, path: str) -> str:
        base = self.settings.server.public_url or f"http://127.0.0.1:{self.settings.server.port}"
        return signed_url(base, path)

    async def twiml_for(self, call_sid: str) -> str:
        """The voicemail TwiML in the caller's stored language (else the business's)."""
        language = None
        if self.db is not None:
            row = await self.db.fetchone(
                "SELECT cu.language FROM calls c JOIN customers cu ON cu.id = c.customer_id "
                "WHERE c.call_sid = ?", (call_sid,))
            language = row["language"] if row is not None else None
        return self.twiml(language or self.settings.business.language)

    def twiml(self, language: str | None = None) -> str:
        response = twiml.VoiceResponse()
        response.say(self.phrases.text("voicemail", language), language=_locale(language))
        response.record(action=self._url("/voicemail/done"), method="POST",
                        max_length=MAX_LENGTH_S, finish_on_key="#", play_beep=True,
                        recording_status_callback=self._url("/voicemail/recording"),
                        recording_status_callback_event="completed",
                        recording_status_callback_method="POST")
        response.say(self.phrases.text("voicemail_thanks", language), language=_locale(language))
        response.hangup()
        return str(response)

    # -- webhooks ------------------------------------------------------------------------------
    async def done(self, request: web.Request) -> web.Response:
        await self.guard.form(request, strict_account=True)
        text = twiml.say_and_hangup(self.phrases.text("voicemail_thanks"))
        return web.Response(text=text, content_type=XML)

    async def recording(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request, once=True, strict_account=True)
        call_sid, url = params.get("CallSid", ""), params.get("RecordingUrl", "")
        if params.get("RecordingStatus", "completed") != "completed" or not url:
            return web.Response(status=204)
        if self.db is None:
            raise web.HTTPServiceUnavailable(text="database unavailable\n")
        row = await self.db.fetchone("SELECT id, customer_id FROM calls WHERE call_sid = ?",
                                     (call_sid,))
        if row is None:
            raise web.HTTPNotFound(text="no such call\n")
        duration = params.get("RecordingDuration", "")
        task = asyncio.create_task(self._attach(call_sid, row["id"], row["customer_id"], url,
                                                duration), name="voicemail")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.Response(status=204)     # Twilio wants a quick answer; the work follows

    # -- the recording -------------------------------------------------------------------------
    async def _attach(self, call_sid: str, call_id: int, customer_id: int | None, url: str,
                      duration: str) -> None:
        with log_context(call_sid):
            text = await self._transcribe(url + ".wav")
            seconds = f" ({duration} s)" if duration.isdigit() else ""
            await self._store(call_id, customer_id, f"Voicemail{seconds}: {text}")
            log.info("voicemail attached to call %d", call_id)
            if self.on_voicemail is not None:
                await self.on_voicemail(call_id)

    async def _transcribe(self, url: str) -> str:
        if self.stt is None:
            return f"(not transcribed: speech recognition is not loaded; recording {url})"
        try:
            data = await self.fetcher.download(url)
            pcm = await asyncio.to_thread(decode_audio, data, MAX_LENGTH_S + 10)
        except MediaError as exc:
            log.warning("voicemail recording not usable: %s", exc.code)
            return f"(the recording could not be fetched or decoded: {exc.code}; {url})"
        transcript = await self.stt.transcribe_async(pcm, self.settings.business.language)
        return f"\"{transcript.text.strip()}\"" if transcript.text.strip() else \
            f"(nothing intelligible was said; recording {url})"

    async def _store(self, call_id: int, customer_id: int | None, text: str) -> None:
        assert self.db is not None
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

        def tx(conn: sqlite3.Connection) -> None:
            if customer_id is not None:
                conn.execute("INSERT INTO taken_messages(customer_id, call_id, channel, text) "
                             "VALUES (?, ?, 'call', ?)", (customer_id, call_id, text))
            conn.execute("INSERT INTO action_log(customer_id, call_id, channel, kind, detail, "
                         "needs_human, created_at) VALUES (?, ?, 'call', 'voicemail', ?, ?, ?)",
                         (customer_id, call_id, text if customer_id is None else "recorded",
                          int(customer_id is None), now))
        await self.db.write(tx)

    async def start(self, app: web.Application) -> None:
        await self.fetcher.start()

    async def close(self, app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fetcher.close()


def _locale(language: str | None) -> str:
    code = (language or "en").split("-")[0]
    return {"en": "en-US", "he": "he-IL", "ru": "ru-RU"}.get(code, code)


def add_routes(app: web.Application, voicemail: Voicemail) -> None:
    app.router.add_post("/voicemail/done", voicemail.done)
    app.router.add_post("/voicemail/recording", voicemail.recording)
    app.on_startup.append(voicemail.start)
    app.on_cleanup.append(voicemail.close)
