"""Voice webhooks: /voice, /voice-stream, the <Connect> action, the <Dial> result, and the
<Gather> mode (/respond, /check_ai) kept from the prototype.

Every handler checks the Twilio signature first (TwilioGuard). A call is recorded in `calls`
when Twilio first asks for it; the streamed call's own record is closed by its session.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import TYPE_CHECKING

from aiohttp import web

from ..actions.handover import record_dial_result
from ..logs import log_context
from . import twiml
from .guard import TwilioGuard
from .signature import signed_url

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)
XML = "application/xml"
SORRY = "I'm sorry, we can't take your call right now. Please try again a little later."
GATHER_DEADLINE_S = 9.0       # Twilio waits 15 s for a webhook; leave room for the network


def _xml(body: str) -> web.Response:
    return web.Response(text=body, content_type=XML)


class VoiceWebhooks:
    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt
        self.settings = rt.settings
        self.guard = TwilioGuard(rt.settings)
        self._pending: dict[str, asyncio.Task] = {}   # gather mode: CallSid -> reply in progress

    def url(self, path: str) -> str:
        base = self.settings.server.public_url or f"http://127.0.0.1:{self.settings.server.port}"
        return signed_url(base, path)

    def ws_url(self) -> str:
        base = self.settings.server.public_url or f"https://127.0.0.1:{self.settings.server.port}"
        return signed_url(base, "/ws", websocket=True).replace("ws://", "wss://", 1)

    async def _record_call(self, call_sid: str, caller: str, mode: str,
                           attestation: str = "") -> int:   # i13: StirVerstat recorded
        def upsert(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO calls (call_sid, caller, mode, attestation) VALUES "
                         "(?, ?, ?, ?) ON CONFLICT(call_sid) DO NOTHING",
                         (call_sid, caller, mode, attestation[:64]))
            return conn.execute("SELECT id FROM calls WHERE call_sid = ?",
                                (call_sid,)).fetchone()[0]
        return await self.rt.db.write(upsert)

    def _fallback(self) -> str:
        operator = self.settings.twilio.operator_number
        if operator:
            return twiml.dial(operator, self.url("/dial-status?fallback=1"))
        return twiml.say_and_hangup(SORRY)

    # -- entry points --------------------------------------------------------------------------
    async def voice(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request)
        if self.settings.server.default_voice_mode == "gather":
            return await self._gather_start(params)
        return await self._stream_start(params)

    async def voice_stream(self, request: web.Request) -> web.Response:
        return await self._stream_start(await self.guard.form(request))

    async def _stream_start(self, params, mode: str = "greeting") -> web.Response:
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        if not call_sid:
            raise web.HTTPBadRequest(text="CallSid missing\n")
        with log_context(call_sid):
            call_id = await self._record_call(call_sid, caller, "stream",
                                              params.get("StirVerstat", ""))  # i13
            if not self.rt.can_take_calls():
                log.error("call refused, not ready: %s", "; ".join(self.rt.problems()))
                return _xml(self._fallback())
            token = self.rt.calls.issue(call_sid, caller, call_id, mode)
            log.info("incoming call from %s: streaming", caller)
            return _xml(twiml.connect_stream(self.ws_url(), self.url("/voice-stream/action"),
                                             {"token": token, "caller": caller}))

    async def stream_action(self, request: web.Request) -> web.Response:
        """Twilio asks what next after the Media Stream closed."""
        params = await self.guard.form(request)
        call_sid = params.get("CallSid", "")
        row = await self.rt.db.fetchone("SELECT next_action, transfer_to FROM calls "
                                        "WHERE call_sid = ?", (call_sid,))
        with log_context(call_sid):
            action = row["next_action"] if row else None
            if action == "transfer" and row["transfer_to"] in self.settings.twilio.transfer_numbers:
                log.info("transferring the call")
                return _xml(twiml.dial(row["transfer_to"], self.url("/dial-status")))
            if action == "hangup":
                response = twiml.VoiceResponse()
                response.hangup()
                return _xml(str(response))
            log.warning("stream ended without a plan (%s): fallback", action)
            return _xml(self._fallback())

    async def dial_status(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request)
        status = params.get("DialCallStatus", "")
        call_sid = params.get("CallSid", "")
        with log_context(call_sid):
            log.info("transfer result: %s", status)
            actions = self.rt.extras.get("actions")
            if actions is not None:
                row = await self.rt.db.fetchone("SELECT id, customer_id FROM calls WHERE "
                                                "call_sid = ?", (call_sid,))
                await record_dial_result(actions, row["id"] if row else None,
                                         row["customer_id"] if row else None, status)
            if status == "completed":
                response = twiml.VoiceResponse()
                response.hangup()
                return _xml(str(response))
            await self.rt.db.execute("UPDATE calls SET outcome = 'in_progress', next_action = NULL"
                                     " WHERE call_sid = ?", (call_sid,))
            if request.query.get("fallback") or not self.rt.can_take_calls():
                return _xml(twiml.say_and_hangup(SORRY))
            return await self._stream_start(params, mode="after_dial")

    # -- <Gather> mode ---------------------------------------------------------------------------
    async def _gather_start(self, params) -> web.Response:
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        with log_context(call_sid):
            await self._record_call(call_sid, caller, "gather",
                                    params.get("StirVerstat", ""))  # i13
            return _xml(twiml.gather_speech(self.url("/respond"),
                                            self.settings.business.greeting,
                                            language=_locale(self.settings.business.language)))

    async def respond(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request)
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        speech = (params.get("SpeechResult") or "").strip()
        with log_context(call_sid):
            if not speech:
                return _xml(twiml.gather_speech(self.url("/respond"), "Sorry, I didn't catch "
                                                "that. How can I help?"))
            row = await self.rt.db.fetchone("SELECT id FROM calls WHERE call_sid = ?", (call_sid,))
            call_id = row["id"] if row else await self._record_call(call_sid, caller, "gather")
            task = asyncio.create_task(self._gather_reply(caller, call_id, speech))
            self._pending[call_sid] = task
            return await self._answer_when_ready(call_sid)

    async def check_ai(self, request: web.Request) -> web.Response:
        """The prototype polled here; now it waits (bounded) for the reply still being made."""
        params = await self.guard.form(request)
        with log_context(params.get("CallSid", "")):
            return await self._answer_when_ready(params.get("CallSid", ""))

    async def _answer_when_ready(self, call_sid: str) -> web.Response:
        task = self._pending.get(call_sid)
        if task is None:
            return _xml(twiml.gather_speech(self.url("/respond"), "How else can I help?"))
        done, _ = await asyncio.wait([task], timeout=GATHER_DEADLINE_S)
        if not done:
            response = twiml.VoiceResponse()
            response.say("One moment, please.")
            response.redirect(self.url("/check_ai"))
            return _xml(str(response))
        self._pending.pop(call_sid, None)
        try:
            text, action = task.result()
        except Exception:  # noqa: BLE001 - a failed reply must still answer Twilio
            log.exception("gather reply failed")
            return _xml(self._fallback())
        if action is not None and action.kind == "transfer" and \
                action.target in self.settings.twilio.transfer_numbers:
            response = twiml.VoiceResponse()
            response.say(text or "One moment, I'm connecting you now.")
            response.dial(action.target, action=self.url("/dial-status?fallback=1"))
            return _xml(str(response))
        if action is not None and action.kind == "hangup":
            return _xml(twiml.say_and_hangup(text or "Goodbye!"))
        return _xml(twiml.gather_speech(self.url("/respond"), text,
                                        language=_locale(self.settings.business.language)))

    async def _gather_reply(self, caller: str, call_id: int, speech: str):
        from ..conversation.events import ActionRequested, ReplyDone

        conversation = await self.rt.engine.open(caller, "gather", call_id)
        text, action = "", None
        async for event in conversation.reply(speech):
            if isinstance(event, ActionRequested):
                action = event.action
            elif isinstance(event, ReplyDone):
                text = event.full_text
        await conversation.mark_heard(text, interrupted=False)
        return text, action


def _locale(language: str) -> str:
    return {"en": "en-US", "he": "he-IL", "ru": "ru-RU"}.get(language, language)


def add_routes(app: web.Application, rt: "Runtime") -> None:
    hooks = VoiceWebhooks(rt)
    app.router.add_post("/voice", hooks.voice)
    app.router.add_post("/voice-stream", hooks.voice_stream)
    app.router.add_post("/voice-stream/action", hooks.stream_action)
    app.router.add_post("/dial-status", hooks.dial_status)
    app.router.add_post("/respond", hooks.respond)
    app.router.add_post("/check_ai", hooks.check_ai)
