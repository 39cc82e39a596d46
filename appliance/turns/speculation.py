"""Speculative replies within one call: start early, speak and act only once the turn is over.

The call's turn loop feeds this controller what the ``TurnDetector`` and STT report, and carries
out the actions it returns:

- ``transcript(pause_id, text)`` (the speculative transcript at a ``Pause``)
  -> ``StartReply(attempt, text)``: generate the reply now, but hold its audio and tools;
  (a different transcript while an attempt is live also cancels that attempt first)
- ``resume(pause_id)`` (a ``Resume``) -> ``CancelReply(attempt)``: the caller went on; drop it;
- ``commit(final_text, pause_id)`` (a ``Commit``; ``final_text`` is ``decision.text`` or a fresh
  transcript of the whole turn; ``decision.pause_id``) -> ``ReleaseReply(attempt, held_tools)``
  when the live attempt answered the same words, else ``CancelReply`` of the stale attempt and
  ``RestartReply(attempt, text)``: a new, already committed reply.

"Same words" means ``text.normalise`` equal: case, punctuation and leading/trailing fillers do not
matter ("Yes." == "yes"); any other difference is material and re-runs the reply.

Nothing speculative leaves the box: ``may_speak(attempt)`` is true only for released attempts, and
``tool_call(attempt, call)`` returns "run" only for released attempts, "hold" for a live one (the
call is kept and handed back in ``ReleaseReply.held_tools``, in order) and "drop" for a cancelled
or unknown one (its held calls are discarded). Pure and clock-free; not thread-safe.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from .text import normalise

ToolCall = TypeVar("ToolCall")
ToolVerdict = Literal["run", "hold", "drop"]


@dataclass(frozen=True)
class StartReply:
    attempt: int
    text: str  # the speculative transcript to answer: generate, do not speak, do not act


@dataclass(frozen=True)
class CancelReply:
    attempt: int  # stop generating; discard its text, audio and held tool calls


@dataclass(frozen=True)
class ReleaseReply(Generic[ToolCall]):
    attempt: int  # speak it now
    held_tools: tuple[ToolCall, ...] = ()  # its tool calls held so far: run them now, in order


@dataclass(frozen=True)
class RestartReply:
    attempt: int
    text: str  # the final transcript: generate and speak; tools run at once


ReplyAction = StartReply | CancelReply | ReleaseReply[ToolCall] | RestartReply


@dataclass(frozen=True)
class SpeculationCounters:
    speculative_starts: int = 0  # StartReply issued
    cancelled: int = 0  # speculative attempts cancelled (resumed, superseded or stale)
    committed_from_speculation: int = 0  # turns whose reply was a released speculative attempt
    restarted: int = 0  # turns that needed a RestartReply (no attempt, or different words)
    tools_held: int = 0
    tools_dropped: int = 0


class _State(enum.Enum):
    LIVE = "live"
    RELEASED = "released"


@dataclass
class _Attempt(Generic[ToolCall]):
    text: str
    pause_id: int | None
    state: _State = _State.LIVE
    held: list[ToolCall] = field(default_factory=list)


class SpeculativeTurns(Generic[ToolCall]):
    """One call's speculative attempts. Attempt numbers increase across the call's turns."""

    def __init__(self) -> None:
        self._attempts: dict[int, _Attempt[ToolCall]] = {}
        self._live: int | None = None
        self._next = 1
        self._closed_pause = 0  # pauses up to this one belong to committed turns
        self._counts: dict[str, int] = {}

    @property
    def counters(self) -> SpeculationCounters:
        return SpeculationCounters(**self._counts)

    @property
    def live_attempt(self) -> int | None:
        """The speculative attempt currently being generated, if any."""
        return self._live

    def _count(self, name: str) -> None:
        self._counts[name] = self._counts.get(name, 0) + 1

    def _new(self, text: str, pause_id: int | None, state: _State) -> int:
        attempt, self._next = self._next, self._next + 1
        self._attempts[attempt] = _Attempt(text, pause_id, state)
        return attempt

    def _cancel_live(self) -> list[ReplyAction[ToolCall]]:
        if self._live is None:
            return []
        attempt, self._live = self._live, None
        record = self._attempts.pop(attempt)
        self._counts["tools_dropped"] = self._counts.get("tools_dropped", 0) + len(record.held)
        self._count("cancelled")
        return [CancelReply(attempt)]

    # --- inputs ----------------------------------------------------------------------------
    def transcript(self, pause_id: int, text: str) -> list[ReplyAction[ToolCall]]:
        """The speculative transcript at pause ``pause_id``: start (or keep) an attempt.
        Ignored for a pause of a turn already committed (a transcript that came too late)."""
        if pause_id <= self._closed_pause:
            return []
        live = self._attempts.get(self._live) if self._live is not None else None
        if live is not None and normalise(live.text) == normalise(text):
            live.pause_id = pause_id  # same words: the running attempt still answers them
            return []
        actions = self._cancel_live()
        if not normalise(text):
            return actions  # nothing to answer yet ("um", a breath)
        self._live = self._new(text, pause_id, _State.LIVE)
        self._count("speculative_starts")
        return [*actions, StartReply(self._live, text)]

    def resume(self, pause_id: int) -> list[ReplyAction[ToolCall]]:
        """The caller went on after pause ``pause_id``: cancel that pause's attempt."""
        live = self._attempts.get(self._live) if self._live is not None else None
        if live is None or live.pause_id != pause_id:
            return []
        return self._cancel_live()

    def commit(self, final_text: str, pause_id: int | None = None) -> list[ReplyAction[ToolCall]]:
        """The turn is over and ``final_text`` is what the caller said: release or restart.
        ``pause_id`` (``TurnDecision.pause_id``) closes that pause and all before it."""
        if pause_id is not None:
            self._closed_pause = max(self._closed_pause, pause_id)
        live = self._attempts.get(self._live) if self._live is not None else None
        final = normalise(final_text)
        if live is not None and final and normalise(live.text) == final:
            attempt, self._live = self._live, None
            live.state = _State.RELEASED
            held, live.held = tuple(live.held), []
            self._count("committed_from_speculation")
            return [ReleaseReply(attempt, held)]
        actions = self._cancel_live()
        if not final:
            return actions  # nothing was said: no reply
        self._count("restarted")
        return [*actions, RestartReply(self._new(final_text, None, _State.RELEASED), final_text)]

    # --- what an attempt may do ------------------------------------------------------------
    def may_speak(self, attempt: int) -> bool:
        """Audio of ``attempt`` may reach the caller (only once released)."""
        record = self._attempts.get(attempt)
        return record is not None and record.state is _State.RELEASED

    def tools_allowed(self, attempt: int) -> bool:
        """Tools (booking, transfer, message) may run for ``attempt`` (only once released)."""
        return self.may_speak(attempt)

    def tool_call(self, attempt: int, call: ToolCall) -> ToolVerdict:
        """A reply wants to run ``call``: "run" it now, "hold" (kept until the turn commits and
        returned in ``ReleaseReply.held_tools``), or "drop" (the attempt was cancelled)."""
        record = self._attempts.get(attempt)
        if record is None:  # cancelled (records are dropped on cancel) or unknown
            self._count("tools_dropped")
            return "drop"
        if record.state is _State.RELEASED:
            return "run"
        record.held.append(call)
        self._count("tools_held")
        return "hold"

    def forget(self, attempt: int) -> None:
        """The reply of a released ``attempt`` has finished: free its record."""
        record = self._attempts.get(attempt)
        if record is not None and record.state is _State.RELEASED:
            del self._attempts[attempt]
