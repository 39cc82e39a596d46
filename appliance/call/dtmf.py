"""Keys the caller types during a call, beyond the operator key: they go to the conversation.

A caller may key in an order number or a phone number. Digits are collected until `#`, until
`max_digits`, or until `quiet_s` passes without a key; the collected keys then become one
caller turn, "caller keyed: 12345#", answered like a spoken one (the bot stops talking first).
The operator key transfers only when pressed on its own (no digits pending), so a "0" inside
a number is a digit.

`KeyedDigits` is the clock-free state machine; `Keypad` runs it for one call session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Protocol

from .timing import TurnTimes

log = logging.getLogger(__name__)
PREFIX = "caller keyed: "
KEYS = frozenset("0123456789*#ABCD")


@dataclass
class KeyedDigits:
    """Digits typed so far; `add` and `due` return the finished text (or None)."""

    quiet_s: float = 2.5
    max_digits: int = 32
    keys: list[str] = field(default_factory=list)
    last_at: float | None = None

    @property
    def pending(self) -> bool:
        return bool(self.keys)

    @property
    def deadline(self) -> float | None:
        return None if self.last_at is None else self.last_at + self.quiet_s

    def add(self, digit: str, now: float) -> str | None:
        if digit not in KEYS:
            return None
        self.keys.append(digit)
        self.last_at = now
        if digit == "#" or len(self.keys) >= self.max_digits:
            return self._take()
        return None

    def due(self, now: float) -> str | None:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return None
        return self._take()

    def _take(self) -> str | None:
        text = "".join(self.keys)
        self.keys.clear()
        self.last_at = None
        return text or None


class KeypadCall(Protocol):
    """What the keypad needs of a call session (call/session.py)."""

    language: str

    def clock(self) -> float: ...

    def spawn(self, coro: Coroutine[object, object, None], name: str) -> asyncio.Task[None]: ...

    async def interrupt(self) -> None: ...

    def start_reply(self, text: str, language: str | None, times: TurnTimes) -> object: ...


class Keypad:
    def __init__(self, call: KeypadCall, quiet_s: float = 2.5,
                 sleep: Callable[[float], Coroutine[object, object, None]] = asyncio.sleep
                 ) -> None:
        self.call, self.digits, self._sleep = call, KeyedDigits(quiet_s), sleep
        self._timer: asyncio.Task[None] | None = None

    @property
    def pending(self) -> bool:
        return self.digits.pending

    async def press(self, digit: str) -> None:
        text = self.digits.add(digit, self.call.clock())
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        if text is not None:
            await self._submit(text)
        elif self.digits.pending:
            self._timer = self.call.spawn(self._wait_quiet(), "dtmf-quiet")

    async def _wait_quiet(self) -> None:
        await self._sleep(self.digits.quiet_s)
        text = self.digits.due(self.call.clock())
        if text is not None:
            await self._submit(text)

    async def _submit(self, keys: str) -> None:
        """The keys become the caller's turn: stop talking, then answer them."""
        log.info("caller keyed %d keys", len(keys))
        await self.call.interrupt()
        now = self.call.clock()
        times = TurnTimes(end_of_speech_ms=0, endpoint_wait_ms=0, end_of_speech_at=now,
                          decided_at=now, transcript_at=now)
        self.call.start_reply(PREFIX + keys, self.call.language, times)
