"""The <Gather> mode's webhooks: the greeting (/voice in gather mode, or a streamed call's
overflow), /respond (the SpeechResult), /gather-partial (partial results: the reply starts
early), /continue (the rest of a reply) and /check_ai (a reply that took long).

What the caller hears comes as <Play> clips of our Piper voice (call/clips.py): the first piece
of the reply as soon as its text exists, then <Redirect> to /continue for the next pieces while
they are synthesised; the last ones inside the next <Gather>, so the caller may speak over them.
<Say> only for a language without a local voice. An empty result reprompts; after [call]
gather_empty_max empty results in a row (counted in the action URL, which Twilio signs) the
call ends with a polite goodbye.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from ..config import Settings
from ..conversation.prompt import filler
from ..logs import log_context
from ..telephony import twiml
from ..telephony.guard import TwilioGuard
from ..tts.clauses import speakable
from .clips import Clip, ClipStore
from .gather import GatherTurns, Piece, ReplyRun
from .gather_voice import GatherVoice, locale
from .record import CallStore

log = logging.getLogger(__name__)
XML = "application/xml"
Hints = Callable[[], Awaitable[tuple[str, ...]]]


def _xml(body: str) -> web.Response:
    return web.Response(text=body, content_type=XML)


@dataclass(frozen=True)
class GatherDeps:
    settings: Settings
    guard: TwilioGuard
    turns: GatherTurns
    clips: ClipStore
    voice: GatherVoice
    hints: Hints
    url: Callable[[str], str]          # path -> the public URL Twilio is to request
    fallback: Callable[[], str]        # TwiML when no reply can be made (the operator)


class GatherWebhooks:
    def __init__(self, deps: GatherDeps, store: CallStore | None) -> None:
        self.deps, self._store = deps, store
        self.turns = deps.turns

    def store_or_503(self) -> CallStore:
        if self._store is None:
            raise web.HTTPServiceUnavailable(text="database unavailable\n")
        return self._store

    @property
    def store(self) -> CallStore:
        return self.store_or_503()

    # -- what the caller hears -----------------------------------------------------------
    def _say(self, call_sid: str, text: str, language: str) -> twiml.Spoken:
        render = self.deps.voice.phrase(language)
        if render is None:
            return twiml.Spoken(text=text, language=locale(language))
        return self._play(self.deps.clips.add(call_sid, text, language, render))

    def _say_phrase(self, call_sid: str, key: str, language: str) -> twiml.Spoken:
        """A fixed phrase (appliance/phrases.ini, [phrases_<lang>]) in the caller's language."""
        return self._say(call_sid, self.deps.settings.phrases.text(key, language), language)

    def _play(self, clip: Clip) -> twiml.Spoken:
        return twiml.Spoken(play_url=self.deps.url(self.deps.clips.path(clip)))

    def _spoken(self, pieces: Sequence[Piece], language: str) -> list[twiml.Spoken]:
        return [self._play(p.clip) if p.clip is not None
                else twiml.Spoken(text=p.text, language=locale(language)) for p in pieces]

    async def _gather(self, language: str, speak: Sequence[twiml.Spoken], empties: int = 0
                      ) -> web.Response:
        action = "/respond" + (f"?empty={empties}" if empties else "")
        return _xml(twiml.gather_speech(self.deps.url(action), language=locale(language),
                                        hints=await self.deps.hints(), speak=speak,
                                        partial_url=self.deps.url("/gather-partial")))

    async def _language(self, call_sid: str, caller: str, call_id: int) -> str:
        return await self.turns.language(call_sid, caller, call_id,
                                         self.deps.settings.stt.languages)

    # -- webhooks ------------------------------------------------------------------------
    async def start(self, params: Mapping[str, str], problems: list[str]) -> web.Response:
        """A new call in <Gather> mode: the greeting, then listen."""
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        with log_context(call_sid):
            call_id = await self.store.open_call(call_sid, caller, "gather",
                                                 params.get("StirVerstat", ""))
            await self.store.set_mode(call_sid, "gather")
            if problems:       # e.g. the service is stopping (ops/service.py)
                log.error("call refused, not ready: %s", "; ".join(problems))
                return _xml(self.deps.fallback())
            language = await self._language(call_sid, caller, call_id)
            greeting = self._say(call_sid, self.deps.settings.business.greeting, language)
            return await self._gather(language, [greeting])

    async def respond(self, request: web.Request) -> web.Response:
        params = await self.deps.guard.form(request, strict_account=True)
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        speech = (params.get("SpeechResult") or "").strip()
        with log_context(call_sid):
            if self.turns.engine is None:
                log.error("no conversation engine: fallback")
                return _xml(self.deps.fallback())
            call_id = (await self.store.call_id(call_sid)
                       or await self.store.open_call(call_sid, caller, "gather"))
            language = await self._language(call_sid, caller, call_id)
            if not speech:
                return await self._empty(call_sid, call_id, language, _empties(request) + 1)
            run = await self.turns.final(call_sid, caller, call_id, speech, language)
            return await self._answer(call_sid, call_id, run)

    async def partial(self, request: web.Request) -> web.Response:
        """Twilio's partial results while the caller speaks: the reply starts early."""
        params = await self.deps.guard.form(request, strict_account=True)
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        text = (params.get("UnstableSpeechResult") or params.get("StableSpeechResult") or "")
        call_id = await self.store.call_id(call_sid)
        if call_id is not None and text.strip() and self.turns.engine is not None:
            with log_context(call_sid):
                language = await self._language(call_sid, caller, call_id)
                self.turns.partial(call_sid, caller, call_id, text.strip(), language)
        return web.Response(status=204)

    async def more(self, request: web.Request) -> web.Response:
        """/continue and /check_ai: the next pieces of the reply in progress."""
        params = await self.deps.guard.form(request, strict_account=True)
        call_sid, caller = params.get("CallSid", ""), params.get("From", "")
        with log_context(call_sid):
            call_id = await self.store.call_id(call_sid)
            run = self.turns.current(call_sid)
            if call_id is None or run is None or run.answered:
                language = (await self._language(call_sid, caller, call_id)
                            if call_id is not None else self.deps.settings.business.language)
                return await self._gather(
                    language, [self._say_phrase(call_sid, "anything_else", language)])
            return await self._answer(call_sid, call_id, run)

    # -- answers -------------------------------------------------------------------------
    async def _empty(self, call_sid: str, call_id: int, language: str, empties: int
                     ) -> web.Response:
        if empties >= self.deps.settings.call.gather_empty_max:
            log.info("%d empty results in a row: goodbye", empties)
            await self.store.finish(call_id, "no_speech")
            return _xml(twiml.speak_then_hangup(
                [self._say_phrase(call_sid, "no_input_goodbye", language)]))
        return await self._gather(language, [self._say_phrase(call_sid, "reprompt", language)],
                                  empties)

    async def _answer(self, call_sid: str, call_id: int, run: ReplyRun) -> web.Response:
        pieces = await run.next()
        if pieces is None:              # nothing yet: "one moment", then ask again
            hold = self._say(call_sid, speakable(filler(run.language)), run.language)
            return _xml(twiml.speak_then_redirect([hold], self.deps.url("/check_ai")))
        spoken = self._spoken(pieces, run.language)
        if not run.all_handed:
            return _xml(twiml.speak_then_redirect(spoken, self.deps.url("/continue")))
        if run.error is not None:
            run.answered = True
            log.warning("<Gather> reply failed (%s): fallback", run.error)
            return _xml(self.deps.fallback())
        return await self._after_reply(call_sid, call_id, run, spoken)

    async def _after_reply(self, call_sid: str, call_id: int, run: ReplyRun,
                           spoken: list[twiml.Spoken]) -> web.Response:
        run.answered = True
        action, settings = run.action, self.deps.settings
        if action is not None and action.kind == "transfer" and \
                action.target in settings.twilio.transfer_numbers:
            await self.store.finish(call_id, "transferred")
            return _xml(twiml.speak_then_dial(
                spoken or [self._say_phrase(call_sid, "transfer", run.language)],
                action.target, self.deps.url("/dial-status?fallback=1")))
        if action is not None and action.kind == "hangup":
            await self.store.finish(call_id, "completed")
            return _xml(twiml.speak_then_hangup(
                spoken or [self._say_phrase(call_sid, "goodbye", run.language)]))
        caller = self.turns.caller(call_sid)
        language = await self._language(call_sid, caller, call_id) if caller else run.language
        return await self._gather(language, spoken)     # the caller's language, if it changed


def _empties(request: web.Request) -> int:
    try:
        return max(0, min(100, int(request.query.get("empty", "0"))))
    except ValueError:
        return 0


def add_routes(app: web.Application, hooks: GatherWebhooks) -> None:
    app.router.add_post("/respond", hooks.respond)
    app.router.add_post("/gather-partial", hooks.partial)
    app.router.add_post("/continue", hooks.more)
    app.router.add_post("/check_ai", hooks.more)
