"""The <Gather> mode kept from the prototype (/respond, /check_ai): Twilio transcribes, the
conversation engine answers, TwiML says it. A reply still being made when Twilio's webhook
deadline nears is waited for on the next request (a redirect to /check_ai).

Nothing stays forever: a reply nobody came back for (the caller hung up) is dropped
RESULT_TTL_S after it finished, and one still running after REPLY_LIMIT_S is cancelled."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..conversation.engine import Engine
from ..conversation.events import Action, ActionRequested, ReplyDone

log = logging.getLogger(__name__)
GATHER_DEADLINE_S = 9.0       # Twilio waits 15 s for a webhook; leave room for the network
RESULT_TTL_S = 120.0          # a finished reply not asked for by then is dropped
REPLY_LIMIT_S = 120.0         # a reply still being made by then is cancelled


@dataclass(frozen=True)
class GatherReply:
    text: str
    action: Action | None


class GatherTurns:
    """CallSid -> the reply in progress."""

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine
        self._pending: dict[str, asyncio.Task[GatherReply]] = {}

    def start(self, call_sid: str, caller: str, call_id: int, speech: str) -> None:
        task = asyncio.create_task(self._reply(caller, call_id, speech))
        self._pending[call_sid] = task
        loop = asyncio.get_running_loop()
        limit = loop.call_later(REPLY_LIMIT_S, task.cancel)

        def finished(done: asyncio.Task[GatherReply]) -> None:
            limit.cancel()
            loop.call_later(RESULT_TTL_S, self._forget, call_sid, done)
        task.add_done_callback(finished)

    def _forget(self, call_sid: str, task: asyncio.Task[GatherReply]) -> None:
        if self._pending.get(call_sid) is task:
            del self._pending[call_sid]
            log.info("a <Gather> reply nobody asked for was dropped")
        if not task.cancelled() and task.exception() is not None:
            log.warning("dropped <Gather> reply had failed: %r", task.exception())

    def pending_count(self) -> int:
        return len(self._pending)

    def pending(self, call_sid: str) -> bool:
        return call_sid in self._pending

    async def wait(self, call_sid: str) -> GatherReply | None:
        """The reply, or None if it is not ready within the deadline (raises if it failed)."""
        task = self._pending[call_sid]
        done, _ = await asyncio.wait([task], timeout=GATHER_DEADLINE_S)
        if not done:
            return None
        self._pending.pop(call_sid, None)
        if task.cancelled():
            raise RuntimeError(f"no reply within {REPLY_LIMIT_S:.0f} s")
        return task.result()

    async def _reply(self, caller: str, call_id: int, speech: str) -> GatherReply:
        if self.engine is None:
            raise RuntimeError("no conversation engine")
        conversation = await self.engine.open(caller, "gather", call_id)
        text, action = "", None
        async for event in conversation.reply(speech):
            if isinstance(event, ActionRequested):
                action = event.action
            elif isinstance(event, ReplyDone):
                text = event.full_text
        await conversation.mark_heard(text, interrupted=False)
        return GatherReply(text, action)
