"""Voice webhooks: /voice, /voice-stream, the <Connect> action, the <Dial> result; calls in
<Gather> mode (the default mode "gather", or the overflow) go on in call/gather_hooks.py.

Every handler checks the Twilio signature first (TwilioGuard). A call is recorded in `calls`
(call/record.py) when Twilio first asks for it; a streamed call's record is closed by its
session, and every record by Twilio's status callback (call/status.py). telephony/ supplies only the wire format: signatures and TwiML.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import time

from aiohttp import web

from ..config import Settings
from ..logs import log_context, mask_phone
from ..telephony import twiml
from ..telephony.guard import TwilioGuard
from ..telephony.replay import ReplayCache
from ..telephony.signature import signed_url
from .events import CallEnded
from .gather_hooks import GatherWebhooks
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


def public_url(settings: Settings, path: str) -> str:
    """The URL Twilio is to request for `path` (and signs)."""
    base = settings.server.public_url or f"http://127.0.0.1:{settings.server.port}"
    return signed_url(base, path)


def fallback_twiml(settings: Settings) -> str:
    """The operator, or "please try again later" without one."""
    operator = settings.twilio.operator_number
    if operator:
        return twiml.dial(operator, public_url(settings, "/dial-status?fallback=1"))
    return twiml.say_and_hangup(SORRY)


class VoiceWebhooks:
    def __init__(self, settings: Settings, store: CallStore | None, calls: CallRegistry,
                 gather: GatherWebhooks, problems: Problems, dial_result: DialResult | None = None,
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
        return public_url(self.settings, path)

    def ws_url(self, nonce: str) -> str:
        """The one-time <Stream url> (the URL the upgrade's signature is checked on)."""
        base = self.settings.server.public_url or f"https://127.0.0.1:{self.settings.server.port}"
        return signed_url(base, f"/ws/{nonce}", websocket=True)

    def _fallback(self) -> str:
        return fallback_twiml(self.settings)

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

    # -- <Gather> mode (call/gather_hooks.py) --------------------------------------------
    async def _gather_start(self, params: Mapping[str, str]) -> web.Response:
        return await self.gather.start(params, self.problems())


def add_routes(app: web.Application, hooks: VoiceWebhooks) -> None:
    app.router.add_post("/voice", hooks.voice)
    app.router.add_post("/voice-stream", hooks.voice_stream)
    app.router.add_post("/voice-stream/action", hooks.stream_action)
    app.router.add_post("/dial-status", hooks.dial_status)
