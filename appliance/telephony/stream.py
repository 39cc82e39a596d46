"""/ws: the Media Streams WebSocket. Admission before any model does any work:
1. the upgrade's X-Twilio-Signature (over the wss:// URL) is checked before accepting;
2. the first frames must be `connected` then `start`, within a few seconds;
3. `start` must carry a single-use token issued by /voice-stream for that very call SID.
Anything else is closed with a policy-violation code. Then the call's session runs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, WSMsgType, web

from ..call.session import CallSession
from ..logs import log_context
from .guard import TwilioGuard
from .media import Connected, Start, WireError, parse_frame

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)
START_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 64 * 1024


class MediaStreamEndpoint:
    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt
        self.guard = TwilioGuard(rt.settings)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        self.guard.websocket(request)
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=True)
        await ws.prepare(request)
        try:
            start = await asyncio.wait_for(self._wait_start(ws), START_TIMEOUT_S)
        except (TimeoutError, WireError) as exc:
            log.warning("media stream closed before start: %s", exc)
            await ws.close(code=WSCloseCode.POLICY_VIOLATION)
            return ws
        if start is None:
            return ws
        with log_context(start.call_sid):
            token = start.custom_parameters.get("token", "")
            admission = self.rt.calls.redeem(token, start.call_sid)
            if admission is None:
                log.warning("media stream with an unknown, used or foreign token: closed")
                await ws.close(code=WSCloseCode.POLICY_VIOLATION)
                return ws
            if not self.rt.can_take_calls():
                log.error("not ready for calls: %s", "; ".join(self.rt.problems()))
                await ws.close()
                return ws
            self.rt.calls.add(start.call_sid, asyncio.current_task())
            session = CallSession(self.rt, ws, start, admission)
            await session.run()
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


def add_routes(app: web.Application, rt: "Runtime") -> None:
    app.router.add_get("/ws", MediaStreamEndpoint(rt).handle)
