"""The dashboard's page times on a busy year's database, through the real server.

    python -m bench.admin_bench [--calls 5000] [--turns 6] [--repeats 20]

Seeds `--calls` finished calls (with `--turns` caller turns each, timings, transcripts) and as
many WhatsApp messages into a fresh database, starts the real server on the generated test
models, logs in, and times each page (median and p95 of `--repeats` requests, one client).
Writes bench/results/admin.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from appliance.config import load_settings
from appliance.server import running
from tests.support import models as tm
from tests.support.admin import CALL_SID, AdminClient, seed, set_password
from tests.support.fixtures import MODELS_CACHE, TOKEN, write_ini

PAGES = ["/admin/", "/admin/calls", f"/admin/calls/{CALL_SID}", "/admin/conversations",
         "/admin/customers", "/admin/customers?q=dana", "/admin/health", "/metrics"]
OUT = Path(__file__).parent / "results" / "admin.md"


def grow(db: Path, calls: int, turns: int) -> None:
    rng = random.Random(14)
    conn = sqlite3.connect(db)
    now = time.time()
    with conn:
        for i in range(calls):
            phone = f"+9725{rng.randrange(10**7, 10**8)}"
            cid = conn.execute("INSERT OR IGNORE INTO customers(phone, name) VALUES (?, ?)",
                               (phone, f"Customer {i}")).lastrowid
            start = now - rng.uniform(0, 365 * 86400)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(start))
            end = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(start + 90))
            call = conn.execute("INSERT INTO calls(call_sid, customer_id, caller, mode, "
                                "started_at, ended_at, outcome) VALUES (?, ?, ?, 'stream', ?, "
                                "?, 'completed')", (f"CAb{i:030d}", cid, phone, stamp,
                                                    end)).lastrowid
            for t in range(turns):
                conn.execute("INSERT INTO turns(customer_id, channel, call_id, role, text) "
                             "VALUES (?, 'call', ?, 'user', 'a question about a fridge')",
                             (cid, call))
                conn.execute("INSERT INTO call_turns(call_id, turn_index, transcript, model, "
                             "turn_latency_ms, created_at) VALUES (?, ?, 'q', 'gemini:x', ?, ?)",
                             (call, t, rng.uniform(600, 2500), stamp))
            conn.execute("INSERT INTO messages_in(message_sid, channel, phone, from_address, "
                         "to_address, body) VALUES (?, 'whatsapp', ?, ?, 'whatsapp:+1555', 'hi')",
                         (f"SMb{i}", phone, "whatsapp:" + phone))
    conn.close()


async def measure(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    models = tm.ensure_models(MODELS_CACHE)
    with tempfile.TemporaryDirectory() as tmp:
        ini = write_ini(Path(tmp) / "config.ini", models)
        settings = load_settings(ini, environ={"TWILIO_AUTH_TOKEN": TOKEN})
        async with running(settings) as srv, aiohttp.ClientSession() as http:
            seed(settings.storage.database)
            grow(settings.storage.database, args.calls, args.turns)
            set_password(settings.storage.database)
            client = AdminClient(srv.url, http)
            assert await client.login() == 303
            rows = []
            for path in PAGES:
                await client.get(path)                      # warm-up
                times = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    status, _, _ = await client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    assert status == 200, path
                times.sort()
                rows.append((path, statistics.median(times),
                             times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]))
            return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rows = asyncio.run(measure(args))
    title = (f"# Dashboard page times ({args.calls} calls x {args.turns} turns, "
             f"{args.repeats} requests each)")
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
               f"{os.getloadavg()[0]:.1f} (other work on the machine adds noise)")
    lines = [title, "", machine, "", "| page | median ms | p95 ms |", "|---|---:|---:|"]
    lines += [f"| `{p}` | {m:.1f} | {p95:.1f} |" for p, m, p95 in rows]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
