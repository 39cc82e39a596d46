"""What the whole-call tests share: caller turns from the shared WAVs, rows of the server's
database, webhooks signed as Twilio signs them, one-time stream tickets, and the Gemini
stand-in answering REPLY."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pytest
from twilio.request_validator import RequestValidator

from appliance.simulate import CallerTurn
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.fixtures import AUDIO_DIR, PUBLIC_URL, TOKEN
from tests.support.turn_replay import read_wav, write_wav

MANIFEST = {e["file"]: e for e in json.loads((AUDIO_DIR / "manifest.json").read_text())}
REPLY = "Of course, I can book that for you. Which time suits you best, nine or eleven?"
ACCOUNT = "AC" + "0" * 32
SIGN = RequestValidator(TOKEN)


def turn(name: str, **kw) -> CallerTurn:
    return CallerTurn(AUDIO_DIR / name, speech_end_s=MANIFEST[name]["speech_end_s"], **kw)


def paused_turn(directory: Path, pause_s: float) -> CallerTurn:
    """en_book.wav's speech, a pause of `pause_s`, then its speech again."""
    pcm, rate = read_wav(AUDIO_DIR / "en_book.wav")
    entry = MANIFEST["en_book.wav"]
    speech = pcm[int(entry["speech_start_s"] * rate):int(entry["speech_end_s"] * rate)]
    lead = np.zeros(int(0.5 * rate), np.int16)
    gap = np.zeros(int(pause_s * rate), np.int16)
    path = directory / "en_book_paused.wav"
    write_wav(path, np.concatenate([lead, speech, gap, speech, pcm[-rate:]]), rate)
    return CallerTurn(path, speech_end_s=(len(lead) + 2 * len(speech) + len(gap)) / rate)


@pytest.fixture
def gemini(gemini: FakeGemini) -> FakeGemini:
    """The shared Gemini stand-in (tests/support/fixtures.py), answering REPLY by default."""
    gemini.default = Reply(text=REPLY, ttft_s=0.05)
    return gemini


def rows(db: Path, sql: str, *args: object) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def db_rows(srv, sql: str, *args) -> list[sqlite3.Row]:
    """Rows of the running server's database."""
    return rows(srv.services.settings.storage.database, sql, *args)


@dataclass
class Ticket:
    status: int
    twiml: str
    stream_url: str = ""
    token: str = ""
    local_ws: str = ""

    @property
    def upgrade_headers(self) -> dict[str, str]:
        return {"X-Twilio-Signature": SIGN.compute_signature(self.stream_url, {})}


def call_params(call_sid: str, caller: str = "+15550001111", **extra: str) -> dict[str, str]:
    return {"CallSid": call_sid, "AccountSid": ACCOUNT, "From": caller, "To": "+15550002222",
            "CallStatus": "ringing", **extra}


def sid(n: int) -> str:
    return f"CA{n:032d}"


async def post(srv, path: str, params: dict[str, str]) -> tuple[int, str]:
    headers = {"X-Twilio-Signature": SIGN.compute_signature(PUBLIC_URL + path, params)}
    async with aiohttp.ClientSession() as http, \
            http.post(srv.url + path, data=params, headers=headers) as resp:
        return resp.status, await resp.text()


async def open_ticket(srv, call_sid: str, caller: str = "+15550001111",
                      path: str = "/voice-stream", **extra: str) -> Ticket:
    status, body = await post(srv, path, call_params(call_sid, caller, **extra))
    ticket = Ticket(status, body)
    stream = ET.fromstring(body).find("./Connect/Stream") if status == 200 else None
    if stream is not None:
        ticket.stream_url = stream.get("url")
        ticket.token = {p.get("name"): p.get("value")
                        for p in stream.findall("Parameter")}["token"]
        ticket.local_ws = srv.url.replace("http", "ws", 1) + urlsplit(ticket.stream_url).path
    return ticket


def settings_for(make_settings, gemini, extra: str = ""):
    """Settings for the real server: Gemini at the stand-in, [twilio] account_sid = ACCOUNT."""
    return make_settings(
        extra=f"[gemini]\nbase_url = {gemini.base_url}\n[twilio]\naccount_sid = {ACCOUNT}\n"
              + extra, environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "k"})
