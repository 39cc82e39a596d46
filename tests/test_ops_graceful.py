"""`appliance serve` as systemd runs it, in a real subprocess: READY=1 after the models load,
WATCHDOG=1 from the event loop, and on SIGTERM: STOPPING=1, new calls get the fallback TwiML,
the live call finishes normally, then the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from appliance.simulate import CallerTurn, simulate_call
from tests.support.fixtures import AUDIO_DIR, PUBLIC_URL, TOKEN, write_ini
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.ops import datagram_listener, free_port

REPO = Path(__file__).resolve().parent.parent
MANIFEST = {e["file"]: e for e in json.loads((AUDIO_DIR / "manifest.json").read_text())}


class NotifySocket:
    """What systemd listens on: collects every datagram the service sends."""

    def __init__(self, path: Path) -> None:
        self.sock = datagram_listener(path)
        self.path = path
        self.seen: list[dict[str, str]] = []

    async def wait_for(self, key: str, timeout_s: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = await asyncio.to_thread(self.sock.recv, 4096)
            except TimeoutError:
                break
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.seen.append(fields)
            if key in fields:
                return fields
        raise AssertionError(f"no {key} from the service; got {self.seen}")


async def signed_new_call(url: str) -> str:
    params = {"CallSid": "CA" + "f" * 32, "AccountSid": "AC" + "0" * 32, "From": "+15550003333",
              "To": "+15550002222", "CallStatus": "ringing", "Direction": "inbound"}
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + "/voice-stream", params)
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/voice-stream", data=params,
                             headers={"X-Twilio-Signature": signature}) as resp:
            assert resp.status == 200
            return await resp.text()


async def active_calls(url: str) -> tuple[int, int]:
    async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
        return resp.status, (await resp.json())["active_calls"]


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, test_models, extra: str = ""
                  ) -> AsyncIterator[tuple[subprocess.Popen, NotifySocket, str]]:
    """`appliance serve` as systemd starts it (NOTIFY_SOCKET, WATCHDOG_USEC), Gemini faked."""
    async with FakeGemini() as gemini:
        gemini.default = Reply(text="Of course. Which day suits you?", ttft_s=0.05)
        port = free_port()
        ini = write_ini(tmp_path / "config.ini", test_models,
                        f"[server]\nport = {port}\n[gemini]\nbase_url = {gemini.base_url}\n"
                        + extra)
        notify = NotifySocket(tmp_path / "notify.sock")
        env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000",
               "TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"}
        env.pop("JOURNAL_STREAM", None)
        with (tmp_path / "serve.log").open("w") as log:
            proc = subprocess.Popen(  # noqa: ASYNC220 - a server process for the whole test
                [sys.executable, "-m", "appliance", "--config", str(ini), "serve"],
                cwd=REPO, env=env, stdout=log, stderr=log)
        try:
            yield proc, notify, f"http://127.0.0.1:{port}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            notify.sock.close()


async def test_drain_s_from_the_config_ends_a_call_that_outlasts_it(tmp_path, test_models) -> None:
    """[service] drain_s = 1: a caller who stays on the line after SIGTERM is cut after ~1 s,
    the record is closed, and the process exits 0 (long before systemd's TimeoutStopSec)."""
    async with serving(tmp_path, test_models, "[service]\ndrain_s = 1\nflush_s = 1\n") as (
            proc, notify, url):
        await notify.wait_for("READY", 300)
        turn = CallerTurn(AUDIO_DIR / "en_long.wav",
                          speech_end_s=MANIFEST["en_long.wav"]["speech_end_s"])
        live = asyncio.create_task(simulate_call(url, PUBLIC_URL, TOKEN, [turn], tail_s=60))
        await wait_active(url)
        proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert await asyncio.to_thread(proc.wait, 30) == 0
        exit_s = time.monotonic() - stopped_at
        result = await asyncio.wait_for(live, 30)
    text = (tmp_path / "serve.log").read_text()
    assert "waiting up to 1 s for 1 live call(s)" in text, text[-3000:]
    assert "1 call(s) still live after 1 s; ending them" in text, text[-3000:]
    assert result.closed_by_server and exit_s < 30


async def wait_active(url: str) -> None:
    for _ in range(200):
        if (await active_calls(url))[1] == 1:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the call never became active")


async def test_sigterm_drains_the_live_call_and_refuses_new_ones(tmp_path, test_models) -> None:
    async with serving(tmp_path, test_models) as (proc, notify, url):
        await _drive(proc, notify, url, tmp_path)
    text = (tmp_path / "serve.log").read_text()
    assert "waiting up to" in text, text[-3000:]


async def _drive(proc: subprocess.Popen, notify: NotifySocket, url: str, tmp_path: Path) -> None:
    ready = await notify.wait_for("READY", 300)
    assert ready["STATUS"] == "taking calls"
    assert (await notify.wait_for("WATCHDOG", 5))["WATCHDOG"] == "1"
    turn = CallerTurn(AUDIO_DIR / "en_long.wav", speech_end_s=MANIFEST["en_long.wav"]["speech_end_s"])
    live = asyncio.create_task(simulate_call(url, PUBLIC_URL, TOKEN, [turn]))
    await wait_active(url)
    proc.send_signal(signal.SIGTERM)
    stopping = await notify.wait_for("STOPPING", 10)
    assert stopping["STATUS"] == "draining 1 call(s)"
    twiml = ET.fromstring(await signed_new_call(url))
    assert twiml.find("./Connect") is None                       # no bot for a new call ...
    assert twiml.find("./Dial").text == "+15550009999"           # ... the fallback: the operator
    assert await active_calls(url) == (503, 1)                   # the live call goes on
    result = await asyncio.wait_for(live, 60)
    assert result.turns[0].first_reply_frame_at is not None      # it was answered
    assert not result.closed_by_server                           # and not cut off
    assert await asyncio.to_thread(proc.wait, 60) == 0
    conn = sqlite3.connect(tmp_path / "appliance.db")
    rows = conn.execute("SELECT call_sid, outcome, ended_at FROM calls").fetchall()
    conn.close()
    live_row = [r for r in rows if r[0] == result.call_sid]
    assert live_row and live_row[0][1] == "caller_hung_up" and live_row[0][2]


async def test_the_drain_waits_for_the_outbox_to_send_what_is_due(make_settings) -> None:
    """A reply still on its way to Twilio (the API answers after 1 s) when SIGTERM comes is sent
    before the server goes, not left "in flight" for the next start to untangle."""
    from appliance.ops.service import StopPolicy, drain
    from appliance.server import running
    from tests.support.fakes.twilio_rest import Hang
    from tests.support.messaging import ACCOUNT_SID, SMS_FROM, twilio_stand_in

    async with twilio_stand_in() as fake:
        settings = make_settings(extra=f"[twilio]\naccount_sid = {ACCOUNT_SID}\n"
                                       f"api_base_url = {fake.base_url}\n"
                                       f"[messaging]\nsms_from = {SMS_FROM}\n")
        async with running(settings) as srv:
            fake.script(Hang(1.0))
            outbox = srv.services.outbox
            await outbox.enqueue("+15550001111", "sms", "Your appointment is confirmed.")
            await drain(srv.services, StopPolicy(call_grace_s=0.2, flush_s=15))
            states = await srv.services.db.fetchall("SELECT state FROM messages_out")
            health = srv.services.health()
    assert len(fake.creates()) == 1
    assert [r["state"] for r in states] and all(
        r["state"] not in ("pending", "sending", "unknown") for r in states), \
        [r["state"] for r in states]
    assert not health["ready"] and "service: shutting down" in health["problems"][0]
