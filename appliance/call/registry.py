"""Who may stream: admission of calls, the one-time stream tickets, and the live calls.

/voice-stream admits a call (`admit`) and gets a `Ticket`: a one-time `nonce` that becomes the
last path component of the TwiML <Stream url> (so the signed upgrade URL differs per call and
cannot be replayed), and a `token` carried as a <Parameter> that `start` must present with the
same call SID. The upgrade consumes the nonce (`claim`); `start` checks the token (`redeem`).

Refused: a call SID that is already streaming, holds a ticket, or whose stream ended (until a
failed transfer `reopen`s it); a caller over `caller_max_calls` per window (`caller_allowed`);
any call beyond `max_concurrent` (tickets outstanding + streams live), at issue and again at
the upgrade, so two racing calls cannot both take the last line.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ..config import CallSettings

log = logging.getLogger(__name__)

TOKEN_TTL_S = 60.0
ENDED_TTL_S = 6 * 3600.0        # an ended call's SID stays refused this long


@dataclass(frozen=True)
class CallLimits:
    max_concurrent: int = 4
    caller_max_calls: int = 6
    caller_window_s: float = 600.0

    @classmethod
    def from_settings(cls, call: CallSettings) -> CallLimits:
        return cls(call.max_concurrent, call.caller_max_calls, float(call.caller_window_s))


@dataclass(frozen=True)
class Admission:
    call_sid: str
    caller: str
    call_id: int            # calls.id
    mode: str               # "greeting" or "after_dial" (what the bot says first)
    expires_at: float       # monotonic seconds
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Ticket:
    nonce: str              # the <Stream url> path component, consumed by the upgrade
    token: str              # the <Parameter name="token">, checked at `start`


@dataclass(frozen=True)
class Refused:
    reason: str             # "busy" | "live" | "ticketed" | "ended"


class CallRegistry:
    def __init__(self, limits: CallLimits = CallLimits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self._clock = limits, clock
        self._tickets: dict[str, Admission] = {}        # nonce -> admission not yet upgraded
        self._live: dict[str, asyncio.Task | None] = {}  # call SID -> its session (None: start)
        self._ended: dict[str, float] = {}               # call SID -> when its stream ended
        self._callers: dict[str, deque[tuple[float, str]]] = {}   # From -> (when, call SID)

    # -- admission -------------------------------------------------------------------------
    def caller_allowed(self, caller: str, call_sid: str) -> bool:
        """Count this call for its caller (once per SID); False beyond the rate limit."""
        now, window = self._clock(), self.limits.caller_window_s
        seen = self._callers.setdefault(caller, deque())
        while seen and seen[0][0] < now - window:
            seen.popleft()
        if all(sid != call_sid for _, sid in seen):
            seen.append((now, call_sid))
        for key in [k for k, q in self._callers.items() if not q]:
            del self._callers[key]
        return len(seen) <= self.limits.caller_max_calls

    def admit(self, call_sid: str, caller: str, call_id: int, mode: str = "greeting"
              ) -> Ticket | Refused:
        self._expire()
        if call_sid in self._live:
            return Refused("live")
        if call_sid in self._ended:
            return Refused("ended")
        if any(a.call_sid == call_sid for a in self._tickets.values()):
            return Refused("ticketed")
        if self.load() >= self.limits.max_concurrent:
            return Refused("busy")
        ticket = Ticket(secrets.token_urlsafe(18), secrets.token_urlsafe(24))
        self._tickets[ticket.nonce] = Admission(call_sid, caller, call_id, mode,
                                                self._clock() + TOKEN_TTL_S, ticket.token)
        return ticket

    def claim(self, nonce: str) -> Admission | None:
        """At the upgrade: the ticket for this path nonce, consumed; None if unknown, used,
        expired, or no line is free."""
        self._expire()
        admission = self._tickets.pop(nonce, None)
        if admission is None or admission.call_sid in self._live:
            return None
        if len(self._live) >= self.limits.max_concurrent:
            log.warning("stream upgrade beyond max_concurrent: refused")
            return None
        self._live[admission.call_sid] = None
        return admission

    @staticmethod
    def redeem(admission: Admission, token: str, call_sid: str) -> bool:
        """At `start`: the token and call SID must be the ticket's."""
        return (hmac.compare_digest(admission.token.encode(), token.encode())
                and admission.call_sid == call_sid)

    def release(self, call_sid: str) -> None:
        """A claimed stream that never became a session: its line is free, its SID spent."""
        if self._live.get(call_sid, 0) is None:
            del self._live[call_sid]
            self._ended[call_sid] = self._clock()

    def reopen(self, call_sid: str) -> None:
        """A failed transfer: the call comes back to the receptionist on a new stream."""
        self._ended.pop(call_sid, None)

    def load(self) -> int:
        return len(self._tickets) + len(self._live)

    def _expire(self) -> None:
        now = self._clock()
        for nonce in [n for n, a in self._tickets.items() if a.expires_at < now]:
            del self._tickets[nonce]
        for sid in [s for s, t in self._ended.items() if t < now - ENDED_TTL_S]:
            del self._ended[sid]

    # -- active calls ---------------------------------------------------------------------
    def add(self, call_sid: str, task: asyncio.Task) -> None:
        self._live[call_sid] = task
        task.add_done_callback(lambda _t: self._end(call_sid))

    def _end(self, call_sid: str) -> None:
        self._live.pop(call_sid, None)
        self._ended[call_sid] = self._clock()

    def active_count(self) -> int:
        return len(self._live)

    async def shutdown(self) -> None:
        """Cancel every call and wait for each to close its record."""
        tasks = [t for t in self._live.values() if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
