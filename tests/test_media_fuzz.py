"""Issue 13, fault suite: 10,000 mutated Media Streams frames (tests/support/frame_fuzz.py, seeded) into
a call while a second call runs normally, through the real server with the real VAD, STT and
TTS code. No crash (the server answers the next call), no leaked task (asyncio tasks counted
before and after), every call record closed, and the second call still gets its answer (its
turn latency is printed, not asserted).

A frame that closes the socket (over the 64 KiB message limit, or the 50th bad frame) ends that
stream; the fuzzer then dials in again and goes on until 10,000 frames are sent.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sqlite3
import time

import aiohttp
import pytest

from appliance.server import running
from appliance.simulate import simulate_call
from tests.support.fixtures import PUBLIC_URL, TOKEN
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.frame_fuzz import FrameFuzzer, start_frame
from tests.support.calls import open_ticket, settings_for, turn

FRAMES = 10_000
SEED = 1313
REPLY = "Of course, which day suits you?"


@pytest.fixture
async def gemini():
    async with FakeGemini() as fake:
        fake.default = Reply(text=REPLY, ttft_s=0.05)
        yield fake


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    while not ws.closed:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR):
            return


async def fuzz(srv, frames: int, seed: int) -> dict:
    kinds: collections.Counter[str] = collections.Counter()
    streams, sent, n = 0, 0, 0
    async with aiohttp.ClientSession() as http:
        while sent < frames:
            streams += 1
            call_sid = f"CA{seed:08d}{streams:024d}"
            ticket = await open_ticket(srv, call_sid, f"+1555300{streams:04d}")
            assert ticket.token, ticket.twiml
            fuzzer = FrameFuzzer(seed * 1000 + streams, f"MZ{streams:032d}", call_sid)
            async with http.ws_connect(ticket.local_ws, headers=ticket.upgrade_headers,
                                       max_msg_size=0) as ws:
                drain = asyncio.create_task(_drain(ws))
                await ws.send_str(json.dumps({"event": "connected", "protocol": "Call"}))
                await ws.send_str(json.dumps(start_frame(fuzzer.stream_sid, call_sid,
                                                         ticket.token)))
                while sent < frames and not ws.closed:
                    kind, frame = fuzzer.next()
                    try:
                        if isinstance(frame, bytes):
                            await ws.send_bytes(frame)
                        else:
                            await ws.send_str(frame)
                    except (ConnectionError, aiohttp.ClientError):
                        break
                    sent += 1
                    kinds[kind] += 1
                    n += 1
                    if n % 40 == 0:
                        await asyncio.sleep(0.01)
                await ws.close()
                await asyncio.wait([drain], timeout=10)
                drain.cancel()
    return {"frames": sent, "streams": streams, "kinds": dict(sorted(kinds.items()))}


async def _settle(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


async def test_ten_thousand_fuzzed_frames_while_another_call_is_answered(make_settings, gemini
                                                                         ) -> None:
    settings = settings_for(make_settings, gemini, "[call]\nsilence_prompt_s = 30\n")
    async with running(settings) as srv:
        await asyncio.sleep(0.5)
        tasks_before = len(asyncio.all_tasks())
        started = time.monotonic()
        normal = asyncio.create_task(simulate_call(srv.url, PUBLIC_URL, TOKEN,
                                                   [turn("en_book.wav")], caller="+15550002020"))
        stats = await fuzz(srv, FRAMES, SEED)
        result = await normal
        fuzz_s = time.monotonic() - started
        calls = srv.services.calls
        assert await _settle(lambda: calls.active_count() == 0)
        assert await _settle(lambda: len(asyncio.all_tasks()) <= tasks_before), \
            [t.get_name() for t in asyncio.all_tasks()]
        tasks_after = len(asyncio.all_tasks())

        (t,) = result.turns
        assert t.first_reply_frame_at is not None, "the normal call got its answer"
        conn = sqlite3.connect(settings.storage.database)
        try:
            open_records = conn.execute("SELECT count(*) FROM calls WHERE ended_at IS NULL"
                                        ).fetchone()[0]
            total = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
            replies = conn.execute("SELECT reply_text FROM call_turns c JOIN calls k ON "
                                   "k.id = c.call_id WHERE k.call_sid = ?",
                                   (result.call_sid,)).fetchall()
        finally:
            conn.close()
        assert open_records == 0 and total == stats["streams"] + 1
        assert replies == [(REPLY,)]
        # no crash: the next call is still admitted
        assert (await open_ticket(srv, "CA" + "e" * 32)).token
    assert stats["frames"] == FRAMES
    print(f"\nfuzz: {stats['frames']} frames over {stats['streams']} stream(s) in {fuzz_s:.1f} s; "
          f"kinds {stats['kinds']}; tasks before {tasks_before} after {tasks_after}; "
          f"normal call turn latency {t.turn_latency_ms} ms (heard {t.heard_latency_ms} ms)")
