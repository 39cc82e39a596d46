"""Issue 13's fault suite: the disk fills up at each write of a WhatsApp message's way through
the real server (the product's app and wiring, the real engine and tools against the fake
Gemini server, the Twilio REST stand-in), with the database on a small real tmpfs (needs root,
skipped otherwise). While it is full the error is clear (the webhook answers 500 so Twilio
retries, the log says the disk is full, health reports low disk); once space is back,
without a restart, the message is answered and both messages (the owner's notice from
take_message and the reply) reach Twilio exactly once.

The moments: the inbound insert (the webhook), the answer (the tool's writes, the turns, the
stored reply: full from the moment the model is asked), and the send (full while Twilio's answer is
on its way, so the SID cannot be stored).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from appliance.app import build_app
from appliance.compose import Services, compose
from tests.support.fakes.gemini_server import FakeGemini, Recorded, Reply
from tests.support.fakes.twilio_rest import FakeTwilio, Hang
from tests.support.faults import CUSTOMER, OWNER, REPLY, model
from tests.support.messaging import (FAST, inbound_params, new_sid, sign, twilio_stand_in,
                                          write_settings)
from tests.support.messaging import query, wait_until
from tests.support.fixtures import fill_disk as _fill

MOMENTS = ["inbound", "answer", "send"]


@contextlib.asynccontextmanager
async def serving(settings) -> AsyncIterator[tuple[Services, str]]:
    services = await compose(settings, messaging_options=FAST)
    runner = web.AppRunner(build_app(services), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield services, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await services.runtime.close()


async def post(url: str, params: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.post(
            url + "/message", data=params,
            headers={"X-Twilio-Signature": sign("/message", params)}) as resp:
        return resp.status


class FillingModel:
    """The model, which fills the disk the moment it is first asked (the "answer" moment: the
    caller's turn, the tool's writes and the stored reply all come after)."""

    def __init__(self, fs: Path) -> None:
        self.fs, self.filler = fs, None

    def __call__(self, r: Recorded) -> Reply:
        if self.filler is None:
            self.filler = _fill(self.fs)
        return model(r)


def delivered(db: Path) -> bool:
    rows = query(db, "SELECT state FROM messages_out")
    return len(rows) == 2 and all(r["state"] == "sent" for r in rows)


@pytest.mark.parametrize("moment", MOMENTS)
async def test_a_full_disk_at_each_write_then_space_back_without_a_restart(
        tiny_fs: Path, tmp_path: Path, moment: str, caplog) -> None:
    caplog.set_level(logging.WARNING)
    async with twilio_stand_in() as twilio, FakeGemini() as gemini:
        filling = FillingModel(tiny_fs)
        gemini.default = filling if moment == "answer" else model   # type: ignore[assignment]
        settings = write_settings(tmp_path, twilio.base_url, database=tiny_fs / "appliance.db",
                                  extra=f"[gemini]\nbase_url = {gemini.base_url}\n"
                                        f"[owner]\nwhatsapp = {OWNER}\n"
                                        "[security]\nlow_disk_mb = 1\n",
                                  environ={"GEMINI_API_KEY": "k"})
        async with serving(settings) as (services, url):
            await owner_wrote_today(services)
            params = inbound_params(new_sid(), CUSTOMER, "Hi, I'm Dana, please call me back")
            filler = await fill_at(moment, tiny_fs, url, params, twilio)
            if moment == "answer":
                await wait_until(lambda: filling.filler is not None, timeout=30)
                filler = filling.filler
            assert any(p.startswith("disk: low disk") for p in services.problems())
            if moment == "inbound":
                assert await post(url, params) == 500         # not stored: Twilio retries
            else:
                await wait_until(lambda: full_logged(caplog), timeout=30)
            assert full_logged(caplog), [r.getMessage() for r in caplog.records]
            filler.unlink()                                    # space is back, same process
            if moment == "inbound":
                assert await post(url, params) == 200        # Twilio's retry
            await wait_until(lambda: delivered(settings.storage.database), timeout=60)
            assert not any(p.startswith("disk:") for p in services.problems())
    sent = sorted((m.to, m.body.split("\n")[0]) for m in twilio.messages)
    assert sent == sorted([(CUSTOMER, REPLY), (f"whatsapp:{OWNER}", "Message from Dana")]), sent
    db = settings.storage.database
    assert len(query(db, "SELECT 1 FROM taken_messages")) == 1
    assert [r["state"] for r in query(db, "SELECT state FROM messages_in WHERE body != 'hi'")] \
        == ["replied"]


async def owner_wrote_today(services: Services) -> None:
    """The owner wrote on WhatsApp today, so notices may go to them (as in the kill -9 test)."""
    await services.db.execute(
        "INSERT INTO messages_in (message_sid, channel, phone, from_address, to_address, body, "
        "state) VALUES (?, 'whatsapp', ?, ?, ?, 'hi', 'ignored')",
        (new_sid(), OWNER, f"whatsapp:{OWNER}", "whatsapp:+1"))


async def fill_at(moment: str, fs: Path, url: str, params: dict[str, str],
                  twilio: FakeTwilio) -> Path:
    """Fill the disk at `moment` of the message's way; returns the filler file."""
    if moment == "inbound":
        return _fill(fs)
    if moment == "send":
        twilio.script(Hang(1.0))                 # the first message's answer takes a second
    assert await post(url, params) == 200
    if moment == "answer":
        return fs / "filler"                     # filled by the model (FillingModel)
    await wait_until(lambda: bool(twilio.creates()), timeout=30)
    return _fill(fs)


def full_logged(caplog) -> bool:
    return any("full" in (r.getMessage() + str(r.exc_info and r.exc_info[1])).lower()
               for r in caplog.records)
