"""The kill -9 fault tests' set-up: the real server (the product's own wiring) in a process of
its own to kill at a failpoint, the model that takes a message and then replies, and settings
with an owner who wrote on WhatsApp today."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from appliance.store.db import Database
from tests.support.fakes.gemini_server import Call, FakeGemini, Recorded, Reply
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.messaging import AUTH_TOKEN, new_sid, sign, write_settings

ROOT = Path(__file__).resolve().parents[2]      # the repository
CUSTOMER = "whatsapp:+972501234567"
OWNER = "+972509999999"
REPLY = "Thanks Dana, someone will call you back today."
SERVER = """
import asyncio, os, sys
from aiohttp import web
from appliance.app import build_app
from appliance.compose import compose
from appliance.config import load_settings
from tests.support.messaging import FAST

async def main(ini):
    settings = load_settings(ini, environ={"TWILIO_AUTH_TOKEN": os.environ["TOKEN"],
                                           "GEMINI_API_KEY": "k"})
    services = await compose(settings, messaging_options=FAST)   # the product's own wiring
    runner = web.AppRunner(build_app(services), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


class Server:
    def __init__(self, ini: Path, failpoint: str = "") -> None:
        self.ini, self.failpoint = ini, failpoint
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> Server:
        env = {**os.environ, "TOKEN": AUTH_TOKEN, "PYTHONPATH": str(ROOT)}
        env.pop("APPLIANCE_FAILPOINT", None)
        if self.failpoint:
            env["APPLIANCE_FAILPOINT"] = self.failpoint
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVER, str(self.ini), cwd=str(ROOT), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.port = int(await asyncio.wait_for(self.proc.stdout.readline(), 60))
        return self

    async def post(self, params: dict[str, str]) -> int:
        try:
            async with aiohttp.ClientSession() as session, session.post(
                    f"http://127.0.0.1:{self.port}/message", data=params,
                    headers={"X-Twilio-Signature": sign("/message", params)}) as resp:
                return resp.status
        except aiohttp.ClientError:
            return 0                                  # killed while answering the webhook

    async def died(self, timeout: float = 30) -> bool:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout) == -signal.SIGKILL

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()


def model(r: Recorded) -> Reply:
    """take_message first; once its result is in the request, the reply."""
    if r.function_responses():
        return Reply(text=REPLY)
    return Reply(calls=(Call("take_message", {"message": "please call me back",
                                              "name": "Dana"}),))


async def settings_for(tmp_path: Path, twilio: FakeTwilio, gemini: FakeGemini):
    settings = write_settings(tmp_path, twilio.base_url, extra=(
        f"[gemini]\nbase_url = {gemini.base_url}\n[owner]\nwhatsapp = {OWNER}\n"))
    db = await Database.open(settings.storage.database)   # the owner wrote on WhatsApp today,
    try:                                                  # so notices may go to them
        await db.execute("INSERT INTO messages_in (message_sid, channel, phone, from_address, "
                         "to_address, body, state) VALUES (?, 'whatsapp', ?, ?, ?, 'hi', "
                         "'ignored')", (new_sid(), OWNER, f"whatsapp:{OWNER}", "whatsapp:+1"))
    finally:
        db.close()
    return settings
