"""One reply of a call: conversation engine -> clauses -> Piper -> player, and its outcome.

`ReplyRun.run()` returns a frozen `ReplyOutcome` once every piece has been played; barge-in
cancels it (the session then keeps only what the caller heard). The run's stage times are
replaced as each stage completes (`times`), read on the call's clock.

A speculative run (started in the caller's pause) carries a `gate`: the conversation stores
nothing and runs no tool until it is released, and the player holds its audio until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..conversation.conversation import Conversation
from ..conversation.gate import ReleaseGate
from ..conversation.events import Action, ActionRequested, Filler, ReplyDone, TextDelta
from ..tts.clauses import speakable
from ..tts.first_clause import SpokenClauses
from .events import TurnDecided
from .player import Player
from .speech import PhoneSpeech
from .timing import TurnTimes


@dataclass(frozen=True)
class ReplyOutcome:
    full_text: str           # the whole reply as generated (fillers not included)
    action: Action | None    # what the conversation asked the call to do next
    times: TurnTimes


class ReplyRun:
    def __init__(self, reply_id: int, conversation: Conversation, speech: PhoneSpeech,
                 player: Player, language: Callable[[], str | None],
                 clock: Callable[[], float], times: TurnTimes,
                 gate: ReleaseGate | None = None) -> None:
        self.reply_id = reply_id
        self.times = times
        self.gate = gate                    # set: speculative, held until released
        self.task: asyncio.Task[None] | None = None
        self.turn_index = 0                 # assigned when it becomes the call's reply
        self.decided: TurnDecided | None = None
        self.dropped = False                # cancelled before any of it was sent
        self.fillers: set[str] = set()      # the speakable texts of the fillers said
        self.full_text = ""
        self.action: Action | None = None
        self._conversation, self._speech, self._player = conversation, speech, player
        self._language, self._clock = language, clock

    def stamp(self, **stage: float | str | None) -> None:
        """Record a stage's time (only the first time it happens)."""
        fresh = {k: v for k, v in stage.items() if getattr(self.times, k) is None}
        if fresh:
            self.times = replace(self.times, **fresh)

    async def run(self, text: str, language: str | None) -> ReplyOutcome:
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._generate(text, language, clauses))
            tg.create_task(self._synthesize(clauses))
        await self._player.wait_idle()
        return ReplyOutcome(self.full_text, self.action, self.times)

    async def _generate(self, text: str, language: str | None,
                        clauses: asyncio.Queue[str | None]) -> None:
        splitter = SpokenClauses()
        try:
            async for event in self._conversation.reply(text, language, self.gate):
                if isinstance(event, TextDelta):
                    self.stamp(first_token_at=self._clock())
                    for clause in splitter.feed(event.text, self._clock()):
                        self._put_clause(clause, clauses)
                elif isinstance(event, Filler):
                    for clause in splitter.flush():
                        self._put_clause(clause, clauses)
                    filler = speakable(event.text)
                    self.fillers.add(filler)
                    clauses.put_nowait(filler)
                elif isinstance(event, ActionRequested):
                    self.action = event.action
                elif isinstance(event, ReplyDone):
                    self.full_text = event.full_text
                    self.times = replace(self.times, model=event.model)
            for clause in splitter.flush():
                self._put_clause(clause, clauses)
        finally:
            clauses.put_nowait(None)

    def _put_clause(self, clause: str, clauses: asyncio.Queue[str | None]) -> None:
        clause = speakable(clause)
        if not clause:
            return
        self.stamp(first_clause_at=self._clock())
        clauses.put_nowait(clause)

    async def _synthesize(self, clauses: asyncio.Queue[str | None]) -> None:
        while (clause := await clauses.get()) is not None:
            piece = self._player.new_piece(clause, self.reply_id)
            first_audio = await self._speech.speak(clause, self._language(), piece, self._player)
            if first_audio is not None:
                self.stamp(first_audio_at=self._clock())
