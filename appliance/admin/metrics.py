"""/metrics in the Prometheus text format, read from the database (plus the error counts of
this process). Only for a logged-in owner, or for a scraper on the box itself: loopback peers
without Cloudflare's headers (requests through the tunnel also arrive from loopback, but carry
CF-Connecting-IP / CF-Ray)."""

from __future__ import annotations

import sqlite3

from aiohttp import web

from .auth import COOKIE
from .context import CTX

BUCKETS_MS = (250, 500, 750, 1000, 1500, 2000, 3000, 5000)
OPEN_STATES = ("pending", "sending", "unknown")


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str,
               samples: list[tuple[dict[str, object], float]]) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")


def _histogram(out: _Out, conn: sqlite3.Connection) -> None:
    """Counted by SQLite in one pass (a year of turns is tens of thousands of rows)."""
    buckets = ", ".join(f"sum(turn_latency_ms <= {b})" for b in BUCKETS_MS)
    row = conn.execute(f"SELECT {buckets}, count(*), coalesce(sum(turn_latency_ms), 0) "
                       "FROM call_turns WHERE turn_latency_ms IS NOT NULL").fetchone()
    counts, total, total_ms = row[:len(BUCKETS_MS)], row[-2], row[-1]
    name = "appliance_turn_latency_ms"
    out.lines += [f"# HELP {name} End of the caller's speech to the first reply audio sent.",
                  f"# TYPE {name} histogram"]
    for bound, count in zip(BUCKETS_MS, counts, strict=True):
        out.lines.append(f'{name}_bucket{{le="{bound}"}} {count or 0}')
    out.lines += [f'{name}_bucket{{le="+Inf"}} {total}', f"{name}_sum {total_ms:g}",
                  f"{name}_count {total}"]


def render(conn: sqlite3.Connection, errors: dict[str, int], active_calls: int,
           ready: bool) -> str:
    out = _Out()
    def q(sql: str) -> list[sqlite3.Row]:
        return conn.execute(sql).fetchall()

    out.metric("appliance_calls_total", "counter", "Calls by outcome.",
               [({"outcome": r[0]}, r[1]) for r in q(
                   "SELECT outcome, count(*) FROM calls GROUP BY outcome")])
    out.metric("appliance_turns_total", "counter", "Caller turns on streamed calls.",
               [({}, q("SELECT count(*) FROM call_turns")[0][0])])
    _histogram(out, conn)
    out.metric("appliance_barge_ins_total", "counter", "Bot replies the caller interrupted.",
               [({}, q("SELECT count(*) FROM call_turns WHERE interrupted = 1")[0][0])])
    out.metric("appliance_failovers_total", "counter",
               "Caller turns answered by the local model (Gemini failed, or offline mode).",
               [({}, q("SELECT count(*) FROM call_turns WHERE model LIKE 'local:%'")[0][0])])
    depth = dict(q("SELECT state, count(*) FROM messages_out WHERE state IN "
                   "('pending','sending','unknown') GROUP BY state"))
    out.metric("appliance_outbox_depth", "gauge", "WhatsApp/SMS messages not yet sent.",
               [({"state": s}, depth.get(s, 0)) for s in OPEN_STATES])
    out.metric("appliance_messages_in_total", "counter", "Inbound WhatsApp/SMS messages.",
               [({"channel": r[0]}, r[1]) for r in q(
                   "SELECT channel, count(*) FROM messages_in GROUP BY channel")])
    out.metric("appliance_messages_out_total", "counter", "Outbound WhatsApp/SMS messages.",
               [({"channel": r[0], "state": r[1]}, r[2]) for r in q(
                   "SELECT channel, state, count(*) FROM messages_out GROUP BY channel, state")])
    out.metric("appliance_errors_total", "counter",
               "Errors logged since the process started, by stage.",
               [({"stage": k}, v) for k, v in sorted(errors.items())])
    out.metric("appliance_active_calls", "gauge", "Calls in progress.", [({}, active_calls)])
    out.metric("appliance_ready", "gauge", "1 when the appliance can take calls.",
               [({}, 1 if ready else 0)])
    return "\n".join(out.lines) + "\n"


def _local_scraper(request: web.Request) -> bool:
    via_tunnel = "CF-Connecting-IP" in request.headers or "CF-Ray" in request.headers
    return request.remote in ("127.0.0.1", "::1") and not via_tunnel


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    if not _local_scraper(request) and await ctx.sessions.get(
            request.cookies.get(COOKIE)) is None:
        raise web.HTTPUnauthorized(text="metrics: log in at /admin/login, or scrape from the "
                                        "box itself")
    rt = ctx.services
    text = await ctx.db.read(lambda c: render(c, dict(ctx.errors.by_stage),
                                              rt.calls.active_count(), rt.can_take_calls()))
    return web.Response(text=text, content_type="text/plain",
                        headers={"Cache-Control": "no-store"}, charset="utf-8")
