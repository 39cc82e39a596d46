"""A speculative reply's permission to take effect (the call's turn is over).

A reply started with a gate (`Conversation.reply(text, gate=...)`) streams its text at once, but
stores nothing (neither the caller's words nor the answer) and runs no tool (booking, transfer,
message) until `release()`: a tool call waits for it. Cancelling the reply before then leaves no
trace: the conversation is as if that reply had never been asked for.
"""

from __future__ import annotations

import asyncio


class ReleaseGate:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.released_at: float | None = None   # event-loop time of the release

    @property
    def released(self) -> bool:
        return self._event.is_set()

    def release(self) -> None:
        if not self._event.is_set():
            self.released_at = asyncio.get_running_loop().time()
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
