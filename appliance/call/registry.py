"""Active calls and the single-use tokens that admit a Media Stream to a call.

/voice-stream issues a token bound to the call SID, valid for a short time; the WebSocket's
`start` message must present it with the same call SID, once. Anything else is closed before
any model does any work.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

TOKEN_TTL_S = 60.0


@dataclass(frozen=True)
class Admission:
    call_sid: str
    caller: str
    call_id: int            # calls.id
    mode: str               # "greeting" or "after_dial" (what the bot says first)
    expires_at: float       # monotonic seconds


class CallRegistry:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[str, Admission] = {}
        self._tasks: dict[str, asyncio.Task] = {}

    # -- tokens ---------------------------------------------------------------------------
    def issue(self, call_sid: str, caller: str, call_id: int, mode: str = "greeting") -> str:
        self._expire()
        token = secrets.token_urlsafe(24)
        self._tokens[token] = Admission(call_sid, caller, call_id, mode,
                                        self._clock() + TOKEN_TTL_S)
        return token

    def redeem(self, token: str, call_sid: str) -> Admission | None:
        """The admission for (token, call_sid), consumed; None if unknown, used, expired or
        issued for another call."""
        self._expire()
        for known in list(self._tokens):
            if hmac.compare_digest(known.encode(), token.encode()):
                admission = self._tokens.pop(known)
                if admission.call_sid != call_sid:
                    log.warning("stream token presented for another call")
                    return None
                return admission
        return None

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, a in self._tokens.items() if a.expires_at < now]:
            del self._tokens[token]

    # -- active calls ---------------------------------------------------------------------
    def add(self, call_sid: str, task: asyncio.Task) -> None:
        self._tasks[call_sid] = task
        task.add_done_callback(lambda _t: self._tasks.pop(call_sid, None))

    def active_count(self) -> int:
        return len(self._tasks)

    async def shutdown(self) -> None:
        """Cancel every call and wait for each to close its record."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
