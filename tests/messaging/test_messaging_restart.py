"""Killing the appliance between receiving a message and sending its reply, then starting it
again, still delivers the reply exactly once.

In-process: the app is torn down with its tasks cancelled wherever they are (mid-answer, with
the reply waiting for Twilio, with the request to Twilio in flight) and a new app starts on
the same database. Out of process: a real ``kill -9`` of a server process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.fakes.twilio_rest import FakeTwilio, Hang
from tests.support.messaging import (query, wait_until,
    AUTH_TOKEN,
    Harness,
    inbound_params,
    new_sid,
    sign,
    write_settings,
)

WA = "whatsapp:+972501234567"
SMS = "+972541234567"
ROOT = Path(__file__).resolve().parents[2]


async def test_killed_while_the_engine_answers(harness: Harness) -> None:
    harness.engine.gate = asyncio.Event()             # the model is thinking...
    await harness.send(WA, "hello")
    await harness.wait_for(lambda: len(harness.engine.received) == 1, what="the engine")
    await harness.restart()                           # ...when the process dies
    assert harness.rows("SELECT state FROM messages_in") == [{"state": "received"}]
    assert harness.count("messages_out") == 0
    harness.engine.gate = None
    await harness.settle()
    assert [m.body for m in harness.fake.messages] == ["Reply to: hello"]
    assert [r.text for r in harness.engine.received] == ["hello", "hello"]  # asked again


async def test_killed_while_twilio_is_unreachable(harness: Harness) -> None:
    await harness.fake.stop()                         # connection refused
    await harness.send(SMS, "hello")
    await harness.wait_for(lambda: harness.rows(
        "SELECT 1 FROM messages_out WHERE state = 'pending' AND attempts >= 2"),
        what="failed attempts")
    await harness.stop()
    await harness.fake.start()
    await harness.start()
    await harness.settle()
    assert [m.body for m in harness.fake.messages] == ["Reply to: hello"]
    assert len(harness.engine.received) == 1          # the answer was kept, not recomputed
    (row,) = harness.rows("SELECT state, twilio_sid FROM messages_out")
    assert row == {"state": "sent", "twilio_sid": harness.fake.messages[0].sid}


@pytest.mark.parametrize("twilio_has_it", [True, False])
async def test_killed_with_the_request_in_flight(harness: Harness, twilio_has_it: bool) -> None:
    """The ambiguous case: Twilio may or may not have the message. It is looked up in
    Twilio's list first; sent again only if it is not there."""
    harness.fake.script(Hang(60, create=twilio_has_it))
    await harness.send(WA, "hello")
    await harness.wait_for(lambda: harness.rows(
        "SELECT 1 FROM messages_out WHERE state = 'sending'"), what="the request in flight")
    await asyncio.sleep(0.05)
    await harness.restart()
    await harness.settle()
    assert [m.body for m in harness.fake.messages] == ["Reply to: hello"]
    assert len(harness.fake.creates()) == (1 if twilio_has_it else 2)
    lookups = [r for r in harness.fake.requests if r.method == "GET"]
    assert len(lookups) == 1 and lookups[0].query["To"] == WA
    (row,) = harness.rows("SELECT state, twilio_sid FROM messages_out")
    assert row == {"state": "sent", "twilio_sid": harness.fake.messages[0].sid}


async def test_a_lost_answer_is_settled_by_the_status_callback(harness: Harness) -> None:
    """The API answer never came back, but Twilio's callback names the row (?out=ID)."""
    harness.fake.script(Hang(60, create=True))
    await harness.send(WA, "hello")
    await harness.wait_for(lambda: harness.fake.messages, what="Twilio to have it")
    assert await harness.fake.send_statuses(harness.base_url, "delivered") == [200]
    (row,) = harness.rows("SELECT state, twilio_sid FROM messages_out")
    assert row == {"state": "delivered", "twilio_sid": harness.fake.messages[0].sid}
    await harness.restart()
    await harness.settle()
    assert len(harness.fake.creates()) == 1


# ----------------------------------------------------------------------------------------------
# A real kill -9

SERVER = """
import asyncio, os, sys
from aiohttp import web
from appliance.config import load_settings
from appliance.messaging.webhooks import add_routes, build_channel
from appliance.store.db import Database
from tests.support.messaging import FAST, ScriptedEngine

async def main(ini):
    settings = load_settings(ini, environ={"TWILIO_AUTH_TOKEN": os.environ["TOKEN"]})
    db = await Database.open(settings.storage.database)
    engine = ScriptedEngine(delay_s=float(os.environ.get("ENGINE_DELAY_S", "0")))
    app = web.Application(client_max_size=1024 * 1024)
    add_routes(app, build_channel(settings, db, engine, None, FAST))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


class ServerProcess:
    def __init__(self, ini: Path, engine_delay_s: float = 0.0) -> None:
        self.ini, self.engine_delay_s = ini, engine_delay_s
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> "ServerProcess":
        env = {**os.environ, "TOKEN": AUTH_TOKEN, "ENGINE_DELAY_S": str(self.engine_delay_s),
               "PYTHONPATH": str(ROOT)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVER, str(self.ini), cwd=str(ROOT), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        self.port = int(line)
        return self

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL

    async def post(self, params: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{self.port}/message", data=params,
                headers={"X-Twilio-Signature": sign("/message", params)}) as resp:
            return resp.status


@pytest.mark.parametrize("moment", ["mid_answer", "reply_queued"])
async def test_kill_9_between_receiving_and_sending(tmp_path: Path, fake_twilio: FakeTwilio,
                                                    moment: str) -> None:
    settings = write_settings(tmp_path, fake_twilio.base_url)
    db = settings.storage.database
    first = await ServerProcess(settings.path, 30.0 if moment == "mid_answer" else 0.0).start()
    try:
        if moment == "reply_queued":
            await fake_twilio.stop()
        params = inbound_params(new_sid(), WA, "hello")
        assert await first.post(params) == 200
        if moment == "mid_answer":
            await wait_until(lambda: query(db, "SELECT state FROM messages_in") ==
                             [{"state": "received"}])
        else:
            await wait_until(lambda: query(db, "SELECT 1 FROM messages_out WHERE attempts >= 1 "
                                               "AND state = 'pending'"))
    finally:
        await first.kill()
    if moment == "reply_queued":
        await fake_twilio.start()
    assert fake_twilio.messages == []

    second = await ServerProcess(settings.path).start()
    try:
        assert await second.post(params) == 200       # and Twilio retries the webhook, too
        await wait_until(lambda: len(fake_twilio.messages) == 1 and query(
            db, "SELECT state FROM messages_out") == [{"state": "sent"}])
        await asyncio.sleep(0.5)                       # nothing else trickles out
    finally:
        await second.kill()
    assert [m.body for m in fake_twilio.messages] == ["Reply to: hello"]
    assert query(db, "SELECT state FROM messages_in") == [{"state": "replied"}]
