"""Voice webhooks: /voice, /voice-stream, the <Connect> action, the <Dial> result, and the
<Gather> mode (/respond, /check_ai; call/gather.py) kept from the prototype.

Every handler checks the Twilio signature first (TwilioGuard). A call is recorded in `calls`
(call/record.py) when Twilio first asks for it; the streamed call's own record is closed by its
session. telephony/ supplies only the wire format: signatures and TwiML.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

import time

from ..config import Settings
from ..logs import log_context, mask_phone
from ..telephony import twiml
from ..telephony.guard import TwilioGuard
from ..telephony.replay import ReplayCache
from ..telephony.signature import signed_url
from .events import CallEnded
from .gather import GatherTurns
from .record import CallStore
from .registry import CallRegistry, Refused
from .voicemail import Voicemail

log = logging.getLogger(__name__)
XML = "application/xml"
SORRY = "I'm sorry, we can't take your call right now. Please try again a little later."
BUSY = "All our lines are busy right now. Please call again in a few minutes. Goodbye."
Problems = Callable[[], list[str]]          # why calls cannot be taken now ([] = ready)
# (call_id, customer_id, DialCallStatus): the business actions note a failed transfer
DialResult = Callable[[int | None, int | None, str], Awaitable[None]]


def _xml(body: str) -> web.Response:
    return web.Response(text=body, content_type=XML)


class VoiceWebhooks:
    def __init__(self, settings: Settings, store: CallStore | None, calls: CallRegistry,
                 gather: GatherTurns, problems: Problems, dial_result: DialResult | None = None,
                 voicemail: Voicemail | None = None) -> None:
        self.settings = settings
        self.guard = TwilioGuard(settings, ReplayCache())
        self._store, self.calls, self.gather = store, calls, gather
        self.problems, self.dial_result = problems, dial_result
        self.voicemail = voicemail if voicemail is not None and voicemail.enabled else None

    @property
    def store(self) -> CallStore:
        if self._store is None:
            raise web.HTTPServiceUnavailable(text="database unavailable\n")
        return self._store

    def url(self, path: str) -> str:
        base = self.settings.server.public_url or f"http://127.0.0.1:{self.settings.server.port}"
        return signed_url(base, path)

    def ws_url(self, nonce: str) -> str:
        """The one-time <Stream url> (the URL the upgrade's signature is checked on)."""
        base = self.settings.server.public_url or f"https://127.0.0.1:{self.settings.server.port}"
        return signed_url(base, f"/ws/{nonce}", websocket=True)

    def _fallback(self) -> str:
        operator = self.settings.twilio.operator_number
        if operator:
            return twiml.dial(operator, self.url("/dial-status?fallback=1"))
        return twiml.say_and_hangup(SORRY)

    # -- entry points --------------------------------------------------------------------------
    async def voice(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request, once=True, strict_account=True)
        if (limited := await self._rate_limited(params)) is not None:
            return limited
        if self.settings.server.default_voice_mode == "gather":
            return await self._gather_start(params)
        return await self._stream_start(params)

    async def voice_stream(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request, once=True, strict_account=True)
        if (limited := await self._rate_limited(params)) is not None:
            return limited
        return await self._stream_start(params)

    async def _rate_limited(self, params: Mapping[str, str]) -> web.Response | None:
        """"All lines are busy" for a caller over [call] caller_max_calls per window."""
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        if not call_sid:
            raise web.HTTPBadRequest(text="CallSid missing\n")
        if self.calls.caller_allowed(caller or "anonymous", call_sid):
            return None
        with log_context(call_sid):
            log.warning("caller %s over the call rate limit: busy", mask_phone(caller))
            call_id = await self.store.open_call(call_sid, caller, "stream")
            await self._close(call_id, call_sid, "rate_limited")
        return _xml(twiml.say_and_hangup(BUSY))

    async def _close(self, call_id: int, call_sid: str, outcome: str) -> None:
        await self.store.apply(CallEnded(call_id, time.monotonic(), call_sid, outcome, None,
                                         None), "")

    async def _overflow(self, params: Mapping[str, str], call_id: int) -> web.Response:
        """Every line is taken: [call] overflow says where the call goes."""
        overflow = self.settings.call.overflow
        log.warning("all %d lines busy: overflow to %s", self.calls.limits.max_concurrent,
                    overflow)
        if overflow == "gather":
            return await self._gather_start(params)
        if overflow == "busy":
            await self._close(call_id, params.get("CallSid", ""), "busy")
            return _xml(twiml.say_and_hangup(BUSY))
        return _xml(self._fallback())

    async def _stream_start(self, params: Mapping[str, str], mode: str = "greeting"
                            ) -> web.Response:
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        if not call_sid:
            raise web.HTTPBadRequest(text="CallSid missing\n")
        with log_context(call_sid):
            call_id = await self.store.open_call(call_sid, caller, "stream",
                                                 params.get("StirVerstat", ""))
            problems = self.problems()
            if problems:
                log.error("call refused, not ready: %s", "; ".join(problems))
                return _xml(self._fallback())
            ticket = self.calls.admit(call_sid, caller, call_id, mode)
            if isinstance(ticket, Refused) and ticket.reason == "busy":
                return await self._overflow(params, call_id)
            if isinstance(ticket, Refused):
                log.warning("no stream for a call that is %s: refused", ticket.reason)
                raise web.HTTPConflict(text="this call is streaming or has ended\n")
            log.info("incoming call from %s: streaming", mask_phone(caller))
            return _xml(twiml.connect_stream(self.ws_url(ticket.nonce),
                                             self.url("/voice-stream/action"),
                                             {"token": ticket.token, "caller": caller}))

    async def stream_action(self, request: web.Request) -> web.Response:
        """Twilio asks what next after the Media Stream closed."""
        params = await self.guard.form(request, strict_account=True)
        call_sid = params.get("CallSid", "")
        plan = await self.store.plan(call_sid)
        with log_context(call_sid):
            action = plan.next_action if plan else None
            if plan and action == "transfer" and \
                    plan.transfer_to in self.settings.twilio.transfer_numbers:
                log.info("transferring the call")
                return _xml(twiml.dial(plan.transfer_to, self.url("/dial-status")))
            if action == "voicemail" and self.voicemail is not None:
                return _xml(await self.voicemail.twiml_for(call_sid))
            if action == "hangup":
                response = twiml.VoiceResponse()
                response.hangup()
                return _xml(str(response))
            log.warning("stream ended without a plan (%s): fallback", action)
            return _xml(self._fallback())

    async def dial_status(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request, once=True, strict_account=True)
        status = params.get("DialCallStatus", "")
        call_sid = params.get("CallSid", "")
        with log_context(call_sid):
            log.info("transfer result: %s", status)
            if self.dial_result is not None:
                plan = await self.store.plan(call_sid)
                await self.dial_result(plan.call_id if plan else None,
                                       plan.customer_id if plan else None, status)
            if status == "completed":
                response = twiml.VoiceResponse()
                response.hangup()
                return _xml(str(response))
            if self.voicemail is not None:          # nobody answered: record a message
                return _xml(await self.voicemail.twiml_for(call_sid))
            await self.store.reopen(call_sid)
            if request.query.get("fallback") or self.problems():
                return _xml(twiml.say_and_hangup(SORRY))
            self.calls.reopen(call_sid)
            return await self._stream_start(params, mode="after_dial")

    # -- <Gather> mode ---------------------------------------------------------------------------
    async def _gather_start(self, params: Mapping[str, str]) -> web.Response:
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        with log_context(call_sid):
            await self.store.open_call(call_sid, caller, "gather", params.get("StirVerstat", ""))
            problems = self.problems()       # e.g. the service is stopping (ops/service.py)
            if problems:
                log.error("call refused, not ready: %s", "; ".join(problems))
                return _xml(self._fallback())
            return _xml(twiml.gather_speech(self.url("/respond"),
                                            self.settings.business.greeting,
                                            language=_locale(self.settings.business.language)))

    async def respond(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request, strict_account=True)
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        speech = (params.get("SpeechResult") or "").strip()
        with log_context(call_sid):
            if not speech:
                return _xml(twiml.gather_speech(self.url("/respond"), "Sorry, I didn't catch "
                                                "that. How can I help?"))
            call_id = (await self.store.call_id(call_sid)
                       or await self.store.open_call(call_sid, caller, "gather"))
            self.gather.start(call_sid, caller, call_id, speech)
            return await self._answer_when_ready(call_sid)

    async def check_ai(self, request: web.Request) -> web.Response:
        """The prototype polled here; now it waits (bounded) for the reply still being made."""
        params = await self.guard.form(request, strict_account=True)
        with log_context(params.get("CallSid", "")):
            return await self._answer_when_ready(params.get("CallSid", ""))

    async def _answer_when_ready(self, call_sid: str) -> web.Response:
        if not self.gather.pending(call_sid):
            return _xml(twiml.gather_speech(self.url("/respond"), "How else can I help?"))
        try:
            reply = await self.gather.wait(call_sid)
        except Exception:  # noqa: BLE001 - a failed reply must still answer Twilio
            log.exception("gather reply failed")
            return _xml(self._fallback())
        if reply is None:
            response = twiml.VoiceResponse()
            response.say("One moment, please.")
            response.redirect(self.url("/check_ai"))
            return _xml(str(response))
        text, action = reply.text, reply.action
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


def _locale(language: str) -> str:
    return {"en": "en-US", "he": "he-IL", "ru": "ru-RU"}.get(language, language)


def add_routes(app: web.Application, hooks: VoiceWebhooks) -> None:
    app.router.add_post("/voice", hooks.voice)
    app.router.add_post("/voice-stream", hooks.voice_stream)
    app.router.add_post("/voice-stream/action", hooks.stream_action)
    app.router.add_post("/dial-status", hooks.dial_status)
    app.router.add_post("/respond", hooks.respond)
    app.router.add_post("/check_ai", hooks.check_ai)
