"""The composition root: every service built once, in dependency order, from the frozen
Settings, and returned in one typed, frozen `Services`.

    database -> CPU scheduler (sched/) -> speech models (loaders.py) -> local model, embeddings, knowledge base
    (conversation/wiring.py) -> outbox (messaging/webhooks.py) -> business actions and their
    tools (actions/wiring.py) -> conversation engine -> messaging channel -> call dependencies

Every speech-model job goes through one `CpuScheduler` (services.cpu), each kind of work in its
lane: a call's turns and reply audio first, turn-model scores at a pause next, voice notes last.

`Runtime` keeps only health and lifecycle (components, closers, background tasks). Everything
a call reports goes to `services.call_events`; subscribe with `services.call_events.subscribe`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from .actions.crm import enrich
from .transfer import TransferDecision, decide_transfer
from .actions.services import ActionServices
from .actions.summary import after_call
from .actions.wiring import build_actions
from .audio.vad import SileroVad
from .call.deps import CallConfig, CallDeps
from .call.events import CallEvent, CallEvents
from .call.record import CallStore
from .call.registry import CallLimits, CallRegistry
from .call.speech import PhoneSpeech
from .config import Settings
from .conversation.engine import Engine
from .conversation.memory import Customer
from .conversation.tools import ToolRegistry
from .conversation.wiring import build_engine, load_knowledge
from .kb.embed import Embedder
from .kb.search import KnowledgeBase
from .llm.local import LocalModel
from .loaders import load_speech, warm_phrases
from .messaging.outbox import Outbox
from .messaging.webhooks import MessagingChannel, MessagingOptions, build_channel, build_outbox
from .runtime import Runtime
from .sched.cpu import CpuScheduler, Lane
from .sched.lanes import LaneRecognizer, LaneScorer, NoteRecognizer
from .store.db import Database, StoreError
from .store.disk import DiskStatus, disk_status
from .stt.whisper import SpeechRecognizer
from .turns.smart_turn import SmartTurnModel

log = logging.getLogger(__name__)
Health = dict[str, object]     # the JSON of /healthz


@dataclass(frozen=True)
class Services:
    settings: Settings
    runtime: Runtime
    db: Database | None
    vad: SileroVad | None
    stt: SpeechRecognizer | None
    speech: PhoneSpeech | None
    turn_model: SmartTurnModel | None
    local_llm: LocalModel | None
    embedder: Embedder | None
    kb: KnowledgeBase | None
    engine: Engine | None
    actions: ActionServices | None
    outbox: Outbox | None
    messaging: MessagingChannel
    calls: CallRegistry
    call_events: CallEvents
    cpu: CpuScheduler

    def problems(self) -> list[str]:
        out = self.runtime.problems()
        disk = self.disk()
        if disk.low:      # new calls go to the fallback rather than failing mid-way
            out.append(f"disk: {disk.message}")
        if self.engine is None:
            out.append("conversation engine: no language model available (set GEMINI_API_KEY "
                       "or download the local model)")
        return out

    def disk(self) -> DiskStatus:
        return disk_status(self.settings.storage.database, self.settings.security.low_disk_mb)

    def can_take_calls(self) -> bool:
        return not self.problems()

    def health(self) -> Health:
        problems = self.problems()
        return {
            "ready": not problems,
            "problems": problems,
            "components": {n: c.as_json() for n, c in self.runtime.components.items()},
            "llm": self.engine.status() if self.engine is not None else {"mode": "none"},
            "gemini": {"configured": bool(self.settings.gemini.api_key)},
            "active_calls": self.calls.active_count(),
            "disk": {"low": self.disk().low, "message": self.disk().message},
            "cpu": self.cpu.status(),
        }

    def call_store(self) -> CallStore | None:
        return CallStore(self.db) if self.db is not None else None

    def call_deps(self) -> CallDeps | None:
        """What every streamed call gets (None when calls cannot be taken)."""
        store = self.call_store()
        if (store is None or self.vad is None or self.stt is None or self.speech is None
                or self.engine is None):
            return None
        stt = LaneRecognizer(self.stt, self.cpu.executor(Lane.LIVE))
        turn_model = (LaneScorer(self.turn_model, self.cpu.executor(Lane.SPECULATIVE))
                      if self.turn_model is not None else None)
        return CallDeps(call_config(self.settings), self.vad, stt, self.speech,
                        self.engine, store, self.call_events, self.runtime.audio_executor,
                        decide_transfer=self._decide_transfer,   # CRM: Engine.enrich
                        after_call=self._after_call if self.actions is not None else None,
                        turn_model=turn_model)

    def _decide_transfer(self) -> TransferDecision:
        return decide_transfer(self.settings, datetime.now(timezone.utc))

    def after_call_status(self, call_id: int) -> None:
        """Twilio says the call is over (its status callback, any mode): the owner's summary,
        now even if a transfer's result or a voicemail never came (sent once per call)."""
        if self.actions is not None:
            self.runtime.spawn(after_call(self.actions, call_id, final=True), "call-summary")

    def _after_call(self, call_id: int) -> None:
        if self.actions is not None:
            self.runtime.spawn(after_call(self.actions, call_id), "call-summary")


@dataclass(frozen=True)
class CustomerEnricher:
    """The caller's record completed from the CRM (when [crm] is set up)."""

    actions: ActionServices
    engine: Engine

    async def __call__(self, customer: Customer) -> Customer:
        return await enrich(self.actions.crm, self.engine.memory, customer)


def call_config(s: Settings) -> CallConfig:
    return CallConfig(call=s.call, greeting=s.business.greeting, language=s.business.language,
                      languages=tuple(s.stt.languages),
                      transfer_numbers=frozenset(s.twilio.transfer_numbers),
                      operator_key=s.twilio.operator_key, phrases=s.phrases)


def log_call_event(event: CallEvent) -> None:
    log.debug("call %s: %s", event.call_id, type(event).__name__)


async def open_database(rt: Runtime, s: Settings) -> Database | None:
    try:
        db = await Database.open(s.storage.database)
    except (StoreError, OSError) as exc:
        rt.report("database", False, str(exc), needed_for_calls=True)
        return None
    rt.report("database", True, str(s.storage.database), needed_for_calls=True)
    rt.add_closer(db.close)
    return db


async def compose(settings: Settings, *,
                  messaging_options: MessagingOptions | None = None) -> Services:
    """Build everything; a component that fails is recorded in the runtime, not raised."""
    options = messaging_options or MessagingOptions()
    rt = Runtime()
    db = await open_database(rt, settings)
    cpu = CpuScheduler(settings.stt.workers)
    rt.add_closer(cpu.shutdown)
    speech = await load_speech(rt, settings, cpu.executor(Lane.LIVE))
    knowledge = await load_knowledge(rt, settings, db)
    outbox = build_outbox(settings, db, options)
    tools = ToolRegistry.default()
    actions = build_actions(rt, settings, db, outbox, tools)   # appointments, messages, ...
    engine = await build_engine(rt, settings, db, knowledge, tools)
    if engine is not None and actions is not None and actions.crm is not None:
        engine.enrich = CustomerEnricher(actions, engine)   # every channel: calls, gather, chat
    if speech.speech is not None:
        await warm_phrases(speech.speech, settings)
    notes = NoteRecognizer(speech.stt, cpu.executor(Lane.NOTE)) if speech.stt else None
    channel = build_channel(settings, db, engine, notes, options, outbox, rt.report)
    events = CallEvents()
    events.subscribe(log_call_event)
    return Services(settings=settings, runtime=rt, db=db, vad=speech.vad, stt=speech.stt,
                    speech=speech.speech, turn_model=speech.turn_model, local_llm=knowledge.local_llm,
                    embedder=knowledge.embedder, kb=knowledge.kb, engine=engine,
                    actions=actions, outbox=outbox, messaging=channel,
                    calls=CallRegistry(CallLimits.from_settings(settings.call)),
                    call_events=events, cpu=cpu)
