"""Today: live calls (SSE), today's calls, messages and appointments, what needs attention, and
the two charts (calls per day, turn latency over time)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from . import charts, problems
from .context import ctx_of
from .html import Markup, join, local_time, parse_utc, t, table, who
from .layout import page
from .views_calls import call_rows, calls_table

DAYS = 14
KEEPALIVE_S = 15.0


def day_start_utc(day: date, tz: ZoneInfo) -> str:
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    return start.strftime("%Y-%m-%dT%H:%M:%S")


def local_day(stamp: str, tz: ZoneInfo) -> date | None:
    moment = parse_utc(stamp)
    return moment.astimezone(tz).date() if moment else None


def per_day(stamps: list[str], first: date, tz: ZoneInfo) -> list[int]:
    counts = [0] * DAYS
    for stamp in stamps:
        day = local_day(stamp, tz)
        if day is not None and 0 <= (day - first).days < DAYS:
            counts[(day - first).days] += 1
    return counts


def latency_per_day(rows: list[sqlite3.Row], first: date, tz: ZoneInfo
                    ) -> tuple[list[float | None], list[float | None]]:
    buckets: list[list[float]] = [[] for _ in range(DAYS)]
    for r in rows:
        day = local_day(r["created_at"], tz)
        if day is not None and 0 <= (day - first).days < DAYS:
            buckets[(day - first).days].append(r["turn_latency_ms"])
    medians = [statistics.median(b) if b else None for b in buckets]
    p95 = [sorted(b)[min(len(b) - 1, round(0.95 * (len(b) - 1)))] if b else None
           for b in buckets]
    return medians, p95


def _read(conn: sqlite3.Connection, today: str, first: str, tomorrow: str) -> dict:
    def one(sql: str, *a: object) -> object:
        return conn.execute(sql, a).fetchone()[0]

    return {
        "calls": call_rows(conn, "WHERE c.started_at >= ?", (today,), limit=100),
        "msgs_in": one("SELECT count(*) FROM messages_in WHERE received_at >= ?", today),
        "msgs_out": one("SELECT count(*) FROM messages_out WHERE created_at >= ?", today),
        "appointments": conn.execute(
            "SELECT a.start_utc, a.note, c.name, c.phone FROM appointments a JOIN customers c "
            "ON c.id = a.customer_id WHERE a.status = 'booked' AND a.start_utc >= ? AND "
            "a.start_utc < ? ORDER BY a.start_utc", (today, tomorrow)).fetchall(),
        "starts": [r[0] for r in conn.execute(
            "SELECT started_at FROM calls WHERE started_at >= ?", (first,))],
        "latency": conn.execute(
            "SELECT created_at, turn_latency_ms FROM call_turns WHERE created_at >= ? AND "
            "turn_latency_ms IS NOT NULL", (first,)).fetchall(),
    }


def _card(n: object, label: str) -> Markup:
    return t('<div class="card"><div class="n">{n}</div><div class="l">{l}</div></div>',
             n=n, l=label)


async def today(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    tz = ctx.tz
    now_local = datetime.fromtimestamp(ctx.clock(), tz).date()
    first = now_local - timedelta(days=DAYS - 1)
    d = await ctx.db.read(lambda c: _read(c, day_start_utc(now_local, tz), day_start_utc(
        first, tz), day_start_utc(now_local + timedelta(days=1), tz)))
    issues = await problems.current(ctx)
    issue_html = (join(t('<p class="problem">{p}</p>', p=p) for p in issues) if issues
                  else t('<p class="fine">Everything is working.</p>'))
    labels = [(first + timedelta(days=i)).strftime("%d %b") for i in range(DAYS)]
    medians, p95 = latency_per_day(d["latency"], first, tz)
    appts = table(("Time", "Customer", "For"), [
        (local_time(a["start_utc"], tz, "%H:%M"), who(a["name"], a["phone"]), a["note"])
        for a in d["appointments"]], empty="No appointments today.")
    body = t('<h2>On the line now</h2><div id="live-calls" class="turns">'
             '<p class="empty">Connecting...</p></div>'
             '<h2>Needs attention</h2>{issues}'
             '<div class="cards" style="margin-top:.75rem">{cards}</div>'
             '<h2>Appointments today</h2>{appts}<h2>Calls today</h2>{calls}'
             '<h2>Calls per day</h2>{chart1}<h2>Turn latency</h2>{chart2}',
             issues=issue_html,
             cards=join([_card(len(d["calls"]), "calls today"),
                         _card(d["msgs_in"], "messages in"),
                         _card(d["msgs_out"], "messages out"),
                         _card(len(d["appointments"]), "appointments today")]),
             appts=appts, calls=calls_table(d["calls"], tz),
             chart1=charts.bars(labels, per_day(d["starts"], first, tz),
                                title="Calls per day"),
             chart2=charts.lines(labels, [charts.Series("median", medians, "#2f6fde"),
                                          charts.Series("p95", p95, "#f79009")],
                                 title="Turn latency per day", unit=" ms"))
    return page(request, "Today", body, "today")


async def live_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: `calls` with the whole list of live calls on every change."""
    live = ctx_of(request).live
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    async with live.subscribe() as changes:
        running = True
        while running:
            payload = json.dumps(live.snapshot())
            await resp.write(f"event: calls\ndata: {payload}\n\n".encode())
            try:
                running = await asyncio.wait_for(changes.get(), KEEPALIVE_S)
            except TimeoutError:
                running = True
    return resp


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", today)
    app.router.add_get("/api/live", live_events)
