"""The call event stream -> the dashboard's live picture.

`services.call_events` (appliance/call/events.py) reports every streamed call as it happens; this
maps the few events the live view shows onto `LiveCalls.on_event`, so a browser sees a call
appear, each turn and the hang-up at once. The database poll in live.py stays as the fallback
for `<Gather>` calls, which have no event stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..call import events as call
from . import live


class LiveFeed:
    """A CallObserver (subscribe it to services.call_events)."""

    def __init__(self, calls: live.LiveCalls,
                 wall: Callable[[], float] = time.time) -> None:
        self.calls, self.wall = calls, wall
        self._sids: dict[int, str] = {}      # call_id -> CallSid, for the events without one
        self._turns: dict[int, int] = {}

    def __call__(self, event: call.CallEvent) -> None:
        if isinstance(event, call.CallStarted):
            self._sids[event.call_id] = event.call_sid
            self._turns[event.call_id] = 0
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.wall()))
            known = self.calls.calls.get(event.call_sid)
            self.calls.on_event(live.CallStarted(
                event.call_sid, event.caller, known.name if known else None,
                known.started_at if known else started))
        elif isinstance(event, call.TurnTranscribed) and event.call_id in self._sids:
            self._turns[event.call_id] += 1
            self.calls.on_event(live.CallTurn(self._sids[event.call_id],
                                              self._turns[event.call_id], event.text))
        elif isinstance(event, call.CallEnded):
            self._sids.pop(event.call_id, None)
            self._turns.pop(event.call_id, None)
            self.calls.on_event(live.CallEnded(event.call_sid))
