"""/ws/<nonce>: the Media Streams WebSocket. Admission before any model does any work:
1. the upgrade's X-Twilio-Signature (over the wss:// URL, nonce included) is checked, and the
   nonce - issued once by /voice-stream for one call - is consumed, before accepting; no free
   line (call/registry.py) refuses the upgrade too;
2. the first frames must be `connected` then `start`, within a few seconds;
3. `start` must carry the token of that ticket, for that very call SID.
Anything else is closed with a policy-violation code. Then the call's session runs.

A half-open socket ends too: Twilio sends a media frame every 20 ms, so no frame for
[call] receive_timeout_s means the line is dead (the session ends, its record is closed), and
aiohttp's heartbeat pings the far end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from ..logs import log_context
from ..telephony.guard import TwilioGuard
from ..telephony.media import Connected, Start, WireError, parse_frame
from .deps import CallDeps
from .registry import Admission, CallRegistry
from .session import CallSession

log = logging.getLogger(__name__)
START_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 64 * 1024
HEARTBEAT_S = 15.0
Problems = Callable[[], list[str]]   # why calls cannot be taken now ([] = ready)


class MediaSocket(web.WebSocketResponse):
    """A receive time-out (no frame from Twilio) reads as the line closing, so the session
    ends as a hang-up and closes its record, instead of failing as a crashed stage."""

    async def receive(self, timeout: float | None = None) -> WSMessage:
        try:
            return await super().receive(timeout)
        except TimeoutError:
            log.warning("no frame from Twilio within [call] receive_timeout_s: the line is dead")
            return WSMessage(WSMsgType.CLOSED, None, None)


class MediaStreamEndpoint:
    def __init__(self, deps: CallDeps | None, calls: CallRegistry, guard: TwilioGuard,
                 problems: Problems) -> None:
        self.deps, self.calls, self.guard, self.problems = deps, calls, guard, problems

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        self.guard.websocket(request)
        admission = self.calls.claim(request.match_info["nonce"])
        if admission is None:
            log.warning("stream upgrade with an unknown or used path, or no free line")
            raise web.HTTPForbidden(text="forbidden\n")
        try:
            return await self._stream(request, admission)
        finally:
            self.calls.release(admission.call_sid)   # no-op once the session was added

    async def _stream(self, request: web.Request, admission: Admission
                      ) -> web.WebSocketResponse:
        timeout = self.deps.config.call.receive_timeout_s if self.deps else START_TIMEOUT_S
        ws = MediaSocket(max_msg_size=MAX_MESSAGE_BYTES, autoping=True, heartbeat=HEARTBEAT_S,
                         receive_timeout=timeout)
        await ws.prepare(request)
        try:
            start = await asyncio.wait_for(self._wait_start(ws), START_TIMEOUT_S)
        except (TimeoutError, WireError) as exc:
            log.warning("media stream closed before start: %r", exc)
            await ws.close(code=WSCloseCode.POLICY_VIOLATION)
            return ws
        if start is None:
            return ws
        with log_context(start.call_sid):
            if not self.calls.redeem(admission, start.custom_parameters.get("token", ""),
                                     start.call_sid):
                log.warning("media stream with a wrong token or another call's SID: closed")
                await ws.close(code=WSCloseCode.POLICY_VIOLATION)
                return ws
            problems = self.problems()
            if problems or self.deps is None:
                log.error("not ready for calls: %s", "; ".join(problems))
                await ws.close()
                return ws
            task = asyncio.current_task()
            assert task is not None
            self.calls.add(start.call_sid, task)
            await CallSession(self.deps, ws, start, admission).run()
        return ws

    async def _wait_start(self, ws: web.WebSocketResponse) -> Start | None:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                raise WireError("binary_frame", "binary frame before start")
            event = parse_frame(msg.data)
            if isinstance(event, Connected):
                continue
            if isinstance(event, Start):
                return event
            raise WireError("no_start", f"{type(event).__name__} before start")
        return None


def add_routes(app: web.Application, endpoint: MediaStreamEndpoint) -> None:
    app.router.add_get("/ws/{nonce:[A-Za-z0-9_-]{16,64}}", endpoint.handle)
