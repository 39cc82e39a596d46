"""What one reply produced so far, shared by the task that makes it and the channel's consumer.

The producer puts `TextDelta`, `Filler` and `ActionRequested` events on the turn's queue and
`END` when it is done; `say()` keeps the spacing between model rounds right.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .events import Filler, ReplyEvent, TextDelta
from .gate import ReleaseGate
from ..llm.base import ChatMessage


class End:
    """The producer is done (the last item on a turn's queue)."""


END = End()


@dataclass
class ReplyTurn:
    """One reply: its inputs, what it generated and what reached the channel (loop seconds)."""

    started: float
    language: str | None
    user_text: str = ""
    gate: ReleaseGate | None = None   # a speculative reply: store and act only once released
    user_stored: asyncio.Future[None] | None = None
    user_message: ChatMessage | None = None      # the caller's words as put in the history
    text: str = ""                 # generated
    yielded: str = ""              # handed to the channel
    models: list[str] = field(default_factory=list)
    first_text_at: float | None = None
    spoken: bool = False           # a TextDelta or Filler reached the channel
    last_filler_at: float | None = None
    actions: int = 0
    stored: bool = False
    queue: asyncio.Queue[ReplyEvent | End] = field(default_factory=asyncio.Queue)

    @property
    def holding(self) -> bool:
        """A speculative reply whose caller may still be speaking."""
        return self.gate is not None and not self.gate.released

    def add_model(self, name: str | None) -> None:
        if name and name not in self.models:
            self.models.append(name)

    def say(self, text: str, model: str | None, new_round: bool = False) -> None:
        """Queue generated text (a space between rounds, none at the very start)."""
        if not self.text:
            text = text.lstrip()
        elif new_round and not self.text[-1].isspace() and not text[:1].isspace():
            text = " " + text
        if not text:
            return
        if self.first_text_at is None:
            self.first_text_at = asyncio.get_running_loop().time()
        self.add_model(model)
        self.text += text
        self.queue.put_nowait(TextDelta(text))

    def filler(self, text: str, reason: str, gap_s: float) -> None:
        """Queue a "one moment", unless one was queued less than `gap_s` ago."""
        now = asyncio.get_running_loop().time()
        if self.last_filler_at is not None and now - self.last_filler_at < gap_s:
            return
        self.last_filler_at = now
        self.queue.put_nowait(Filler(text, reason))
