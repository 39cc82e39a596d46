"""Soak: N minutes of 4 simultaneous simulated calls plus a WhatsApp message every few seconds,
against the real server (in this process) with stand-ins for the network services: the fake
Gemini server, the fake Twilio REST API, and the generated test models for VAD/STT/TTS.

Samples RSS, thread count and asyncio task count over time; reports the RSS slope after
warm-up, the growth, that every call record is closed, and messages lost or doubled.

    APPLIANCE_REAL_MODELS=... python -m bench.soak --minutes 30 [--calls 4] [--message-every 3]

The clients run in the same process as the server, so RSS includes them (they hold no state
across calls).
"""

from __future__ import annotations

import argparse
import ctypes
import asyncio
import json
import os
import secrets
import sqlite3
import statistics
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from twilio.request_validator import RequestValidator

from appliance.config import load_settings
from appliance.server import running
from appliance.simulate import CallerTurn, simulate_call
from tests.support import models as tm
from tests.support.fixtures import AUDIO_DIR, MODELS_CACHE, PUBLIC_URL, TOKEN, write_ini
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.fakes.twilio_rest import FakeTwilio

ACCOUNT = "AC" + "0" * 32            # what appliance.simulate sends
WA_FROM = "whatsapp:+14155238886"
RESULTS = Path(__file__).parent / "results"


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    threads: int
    tasks: int
    live_calls: int


@dataclass
class Tally:
    calls: int = 0
    call_errors: list[str] = field(default_factory=list)
    answered_turns: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    messages_posted: list[str] = field(default_factory=list)
    message_errors: int = 0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def slope_per_min(samples: list[Sample]) -> float:
    xs = [s.t_s / 60 for s in samples]
    ys = [s.rss_mb for s in samples]
    if len(xs) < 3:
        return 0.0
    return statistics.linear_regression(xs, ys).slope


async def call_loop(srv_url: str, deadline: float, tally: Tally, n: int) -> None:
    manifest = {e["file"]: e for e in json.loads((AUDIO_DIR / "manifest.json").read_text())}
    turn = CallerTurn(AUDIO_DIR / "en_book.wav", speech_end_s=manifest["en_book.wav"]
                      ["speech_end_s"])
    while time.monotonic() < deadline:
        try:
            result = await simulate_call(srv_url, PUBLIC_URL, TOKEN, [turn],
                                         caller=f"+1555100{n:04d}", reply_timeout_s=30)
            tally.calls += 1
            for t in result.turns:
                if t.turn_latency_ms is not None:
                    tally.answered_turns += 1
                    tally.latencies_ms.append(t.turn_latency_ms)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            tally.call_errors.append(repr(exc)[:200])
            await asyncio.sleep(1)


async def message_loop(srv_url: str, deadline: float, every_s: float, tally: Tally) -> None:
    validator = RequestValidator(TOKEN)
    async with aiohttp.ClientSession() as http:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            sid = "SM" + secrets.token_hex(16)
            sender = f"whatsapp:+9725{i % 50:08d}"
            params = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": ACCOUNT,
                      "From": sender, "To": WA_FROM, "Body": f"Are you open on day {i}?",
                      "NumMedia": "0", "WaId": sender.split("+")[-1], "ProfileName": "Dana"}
            headers = {"X-Twilio-Signature": validator.compute_signature(
                PUBLIC_URL + "/message", params)}
            try:
                async with http.post(srv_url + "/message", data=params, headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        tally.messages_posted.append(sid)
                    else:
                        tally.message_errors += 1
            except aiohttp.ClientError:
                tally.message_errors += 1
            await asyncio.sleep(every_s)


async def sampler(started: float, deadline: float, out: list[Sample], srv, every_s: float,
                  stand_ins: tuple[FakeGemini, FakeTwilio], trim=None) -> None:
    while time.monotonic() < deadline:
        for fake in stand_ins:          # the stand-ins log every request: not the product's memory
            fake.requests.clear()
        if trim is not None:            # diagnosis: is the growth freed heap glibc keeps?
            trim(0)
        out.append(Sample(round(time.monotonic() - started, 1), round(rss_mb(), 1),
                          threading.active_count(), len(asyncio.all_tasks()),
                          srv.services.calls.active_count()))
        await asyncio.sleep(every_s)


def settings_for(tmp: Path, gemini: FakeGemini, twilio: FakeTwilio, calls: int):
    models = tm.ensure_models(MODELS_CACHE)
    ini = write_ini(tmp / "config.ini", models, (
        f"[gemini]\nbase_url = {gemini.base_url}\n"
        f"[twilio]\naccount_sid = {ACCOUNT}\napi_base_url = {twilio.base_url}\n"
        f"[messaging]\nwhatsapp_from = {WA_FROM}\nreply_deadline_s = 5\n"
        f"[call]\nsilence_prompt_s = 30\nmax_concurrent = {calls + 2}\n"
        "caller_max_calls = 1000\n"))
    return load_settings(ini, environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "k"})


def ledger(db: Path, posted: list[str], fake: FakeTwilio) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        q = lambda sql, *a: conn.execute(sql, a).fetchone()[0]   # noqa: E731
        open_calls = q("SELECT count(*) FROM calls WHERE ended_at IS NULL")
        calls = q("SELECT count(*) FROM calls")
        stored = {r[0] for r in conn.execute("SELECT message_sid FROM messages_in "
                                             "WHERE state = 'replied'")}
        replies = q("SELECT count(*) FROM messages_out WHERE purpose = 'reply'")
        answered = q("SELECT count(DISTINCT in_id) FROM messages_out WHERE purpose = 'reply'")
        sent_out = q("SELECT count(*) FROM messages_out WHERE state IN "
                     "('sent','delivered','read')")
    finally:
        conn.close()
    return {"call_records": calls, "call_records_open": open_calls,
            "messages_posted": len(posted), "messages_lost": len(set(posted) - stored),
            "reply_rows": replies, "messages_answered": answered,
            "messages_sent_to_twilio": len(fake.messages), "messages_sent_in_db": sent_out,
            "messages_doubled": max(0, len(fake.messages) - sent_out)}


class HeapWatch:
    """With --tracemalloc: Python heap snapshots after warm-up and at the end, and the source
    lines whose allocations grew most in between (where a slope would come from)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.growth: list[str] = []
        self.traced_mb: list[float] = []

    async def watch(self, started: float, deadline: float) -> None:
        if not self.enabled:
            return
        tracemalloc.start(1)
        await asyncio.sleep((deadline - started) / 5)
        first = tracemalloc.take_snapshot()
        self.traced_mb.append(round(tracemalloc.get_traced_memory()[0] / 2**20, 1))
        await asyncio.sleep(max(0.0, deadline - time.monotonic() - 1))
        last = tracemalloc.take_snapshot()
        self.traced_mb.append(round(tracemalloc.get_traced_memory()[0] / 2**20, 1))
        tracemalloc.stop()
        self.growth = [str(s) for s in last.compare_to(first, "lineno")[:15]]


async def soak(minutes: float, calls: int, message_every_s: float, sample_s: float,
               heap: HeapWatch, malloc_trim: bool = False) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    async with FakeGemini() as gemini, FakeTwilio(ACCOUNT, TOKEN) as twilio:
        gemini.default = Reply(text="Of course. Which day suits you best?", ttft_s=0.05)
        settings = settings_for(tmp, gemini, twilio, calls)
        async with running(settings) as srv:
            assert srv.services.health()["ready"], srv.services.health()["problems"]
            tally, samples = Tally(), []
            started = time.monotonic()
            deadline = started + minutes * 60
            await asyncio.gather(
                sampler(started, deadline, samples, srv, sample_s, (gemini, twilio),
                        ctypes.CDLL("libc.so.6").malloc_trim if malloc_trim else None),
                heap.watch(started, deadline),
                message_loop(srv.url, deadline, message_every_s, tally),
                *(call_loop(srv.url, deadline, tally, n) for n in range(calls)))
            for _ in range(300):                  # let the last replies go out
                if srv.services.calls.active_count() == 0 and srv.services.outbox is not None:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(8)
            samples.append(Sample(round(time.monotonic() - started, 1), round(rss_mb(), 1),
                                  threading.active_count(), len(asyncio.all_tasks()),
                                  srv.services.calls.active_count()))
            books = ledger(settings.storage.database, tally.messages_posted, twilio)
    warm = samples[max(1, len(samples) // 5):]
    lat = sorted(tally.latencies_ms)
    return {
        "minutes": minutes, "simultaneous_calls": calls, "message_every_s": message_every_s,
        "cpus": os.cpu_count(), "calls_completed": tally.calls,
        "call_errors": tally.call_errors[:5], "call_error_count": len(tally.call_errors),
        "answered_turns": tally.answered_turns,
        "turn_latency_ms_median": statistics.median(lat) if lat else None,
        "turn_latency_ms_p95": lat[int(0.95 * (len(lat) - 1))] if lat else None,
        "rss_mb_first": samples[0].rss_mb, "rss_mb_after_warmup": warm[0].rss_mb,
        "rss_mb_last": samples[-1].rss_mb, "rss_mb_max": max(s.rss_mb for s in samples),
        "rss_slope_mb_per_min_after_warmup": round(slope_per_min(warm), 3),
        "rss_slope_mb_per_min_second_half": round(slope_per_min(samples[len(samples) // 2:]), 3),
        "threads_first_last_max": [samples[0].threads, samples[-1].threads,
                                   max(s.threads for s in samples)],
        "tasks_first_last_max": [samples[0].tasks, samples[-1].tasks,
                                 max(s.tasks for s in samples)],
        "message_errors": tally.message_errors, **books,
        "python_heap_mb_after_warmup_last": heap.traced_mb, "python_heap_growth": heap.growth,
        "samples": [s.__dict__ for s in samples],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--message-every", type=float, default=3.0)
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--tracemalloc", action="store_true",
                    help="trace the Python heap and report the lines that grew most")
    ap.add_argument("--malloc-trim", action="store_true",
                    help="return freed heap to the OS at every sample (diagnosis)")
    ap.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = ap.parse_args()
    report = asyncio.run(soak(args.minutes, args.calls, args.message_every, args.sample_every,
                                HeapWatch(args.tracemalloc), args.malloc_trim))
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
