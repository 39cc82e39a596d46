"""POST /call-status: Twilio's status callback (the number's "call status changes" webhook),
which closes every call record, streamed or <Gather>, with Twilio's CallStatus and CallDuration.

A streamed call's session has usually closed its record already (its outcome is kept; the
duration is added); a <Gather> call, or a call that never streamed (overflow, fallback), is
closed here: an outcome still in_progress becomes what the CallStatus says (the caller hung up,
or the call failed). Then the call's <Gather> state and clips are dropped, and a <Gather> call's
summary goes to the owner (once per call; a streamed call's session sends its own). Signed like
every webhook; a replay is refused; statuses before the end (ringing, in-progress) are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..logs import log_context
from ..telephony.guard import TwilioGuard
from .record import CallStore

log = logging.getLogger(__name__)
# CallStatus at the end of a call -> the outcome of a record nothing else closed
OUTCOMES = {"completed": "caller_hung_up", "canceled": "caller_hung_up",
            "no-answer": "caller_hung_up", "busy": "busy", "failed": "failed"}


@dataclass(frozen=True)
class CallStatusHook:
    guard: TwilioGuard
    store: Callable[[], CallStore]
    ended: Callable[[str], None]                       # the call's SID: drop its state
    after_call: Callable[[int], None] | None = None    # the owner's summary (call id)

    async def status(self, request: web.Request) -> web.Response:
        params = await self.guard.form(request, once=True, strict_account=True)
        call_sid, status = params.get("CallSid", ""), params.get("CallStatus", "")
        if not call_sid:
            raise web.HTTPBadRequest(text="CallSid missing\n")
        if status not in OUTCOMES:
            return web.Response(status=204)
        with log_context(call_sid):
            closed = await self.store().close_by_status(
                call_sid, status, _seconds(params.get("CallDuration")), OUTCOMES[status])
            self.ended(call_sid)
            if closed is None:
                log.info("status %s for a call with no record", status)
                return web.Response(status=204)
            log.info("call over (%s, %s s): %s", status, params.get("CallDuration", "?"),
                     closed.outcome)
            if self.after_call is not None:     # every mode: sent once per call (summary.py)
                self.after_call(closed.call_id)
        return web.Response(status=204)


def _seconds(value: str | None) -> int | None:
    try:
        return max(0, int(value)) if value else None
    except ValueError:
        return None


def add_routes(app: web.Application, hook: CallStatusHook) -> None:
    app.router.add_post("/call-status", hook.status)
