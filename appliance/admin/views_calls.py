"""Calls: the list, and one call's page (transcript turn by turn, latency by stage, tools run,
the owner's summary)."""

from __future__ import annotations

import sqlite3

from aiohttp import web

from . import charts
from .context import ctx_of
from .html import Markup, badge, duration, join, kv, local_time, ms, t, table, who
from .layout import page

OUTCOME_KIND = {"completed": "ok", "transferred": "ok", "message_taken": "ok",
                "caller_hung_up": "", "failed": "bad", "in_progress": "live"}
STAGES = ("endpoint wait", "speech recognition", "model first token", "rest of first clause",
          "voice first audio", "overhead")
PAGE = 50

LIST_SQL = """
SELECT c.id, c.call_sid, c.caller, c.started_at, c.ended_at, c.outcome, c.mode,
       cu.name, cu.phone,
       (SELECT language FROM call_turns t WHERE t.call_id = c.id AND language IS NOT NULL
        ORDER BY turn_index DESC LIMIT 1) AS language,
       (SELECT model FROM turns t WHERE t.call_id = c.id AND model IS NOT NULL
        ORDER BY id DESC LIMIT 1) AS model
FROM calls c LEFT JOIN customers cu ON cu.id = c.customer_id
"""


def outcome_badge(outcome: str) -> Markup:
    return badge(outcome.replace("_", " "), OUTCOME_KIND.get(outcome, ""))


def call_rows(conn: sqlite3.Connection, where: str = "", params: tuple = (),
              limit: int = PAGE) -> list[sqlite3.Row]:
    return conn.execute(f"{LIST_SQL} {where} ORDER BY c.id DESC LIMIT ?",
                        (*params, limit)).fetchall()


def calls_table(rows: list[sqlite3.Row], tz) -> Markup:
    return table(("Caller", "Time", "Duration", "Outcome", "Language", "Model"), [
        (t('<a href="/admin/calls/{sid}">{w}</a>', sid=r["call_sid"],
           w=who(r["name"], r["phone"] or r["caller"])),
         local_time(r["started_at"], tz), duration(r["started_at"], r["ended_at"]),
         outcome_badge(r["outcome"]), r["language"] or "", r["model"] or "")
        for r in rows], empty="No calls yet.")


async def calls_list(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    before = request.query.get("before", "")
    where, params = ("WHERE c.id < ?", (int(before),)) if before.isdigit() else ("", ())
    rows = await ctx.db.read(lambda c: call_rows(c, where, params))
    more = Markup("")
    if len(rows) == PAGE:
        more = t('<p><a href="/admin/calls?before={i}">Older calls</a></p>', i=rows[-1]["id"])
    return page(request, "Calls", join([calls_table(rows, ctx.tz), more]), "calls")


def _detail(conn: sqlite3.Connection, sid: str) -> dict[str, object] | None:
    call = conn.execute(f"{LIST_SQL} WHERE c.call_sid = ?", (sid,)).fetchone()
    if call is None:
        return None
    full = conn.execute("SELECT * FROM calls WHERE id = ?", (call["id"],)).fetchone()
    return {
        "call": call, "full": full,
        "turns": conn.execute("SELECT * FROM turns WHERE call_id = ? ORDER BY id",
                              (call["id"],)).fetchall(),
        "timings": conn.execute("SELECT * FROM call_turns WHERE call_id = ? ORDER BY turn_index",
                                (call["id"],)).fetchall(),
        "actions": conn.execute("SELECT kind, detail, needs_human, created_at FROM action_log "
                                "WHERE call_id = ? ORDER BY id", (call["id"],)).fetchall(),
        "summary": conn.execute("SELECT subject, text FROM owner_summaries WHERE call_id = ?",
                                (call["id"],)).fetchone(),
    }


def transcript(turns: list[sqlite3.Row]) -> Markup:
    out = []
    for r in turns:
        if r["role"] == "user":
            out.append(t('<div class="turn user"><div class="who">Caller said</div>{x}</div>',
                          x=r["text"]))
        elif r["role"] == "tool":
            out.append(t('<div class="turn tool"><div class="who">Tool run: {n}</div>{x}</div>',
                          n=r["tool_name"] or "tool", x=r["text"]))
        else:
            said = r["full_text"] or r["text"]
            heard = Markup("")
            if r["interrupted"]:
                rest = said[len(r["text"]):] if said.startswith(r["text"]) else ""
                heard = t('<div class="heard">Heard before the caller interrupted: '
                          '"{h}"<span class="cut">{rest}</span></div>', h=r["text"], rest=rest)
            out.append(t('<div class="turn bot"><div class="who">Bot said{m}</div>{x}{heard}'
                          '</div>', x=said, heard=heard,
                          m=f" ({r['model']})" if r["model"] else ""))
    return t('<div class="turns">{x}</div>', x=join(out)) if out else \
        t('<p class="empty">No transcript was recorded.</p>')


def stage_values(r: sqlite3.Row) -> list[float | None]:
    clause, llm = r["first_clause_ms"], r["llm_ttft_ms"]
    rest = clause - llm if clause is not None and llm is not None else clause
    return [r["endpoint_wait_ms"], r["stt_ms"], llm if clause is not None else None, rest,
            r["tts_first_audio_ms"], r["overhead_ms"]]


def latency(timings: list[sqlite3.Row]) -> Markup:
    if not timings:
        return t('<p class="empty">No per-turn timings (not a streamed call).</p>')
    bars = charts.stacked([(f"turn {i}", stage_values(r)) for i, r in enumerate(timings, 1)],
                          STAGES, title="Turn latency by stage")
    rows = [(i, r["transcript"], ms(r["turn_latency_ms"]), ms(r["heard_latency_ms"]),
             "yes" if r["interrupted"] else "", r["model"] or "")
            for i, r in enumerate(timings, 1)]
    return join([bars, table(("Turn", "Caller said", "Reply started", "Heard", "Interrupted",
                              "Model"), rows)])


async def call_page(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    sid = request.match_info["sid"]
    d = await ctx.db.read(lambda c: _detail(c, sid))
    if d is None:
        raise web.HTTPNotFound(text=f"no call {sid}")
    call, full = d["call"], d["full"]
    facts = kv([("Caller", who(call["name"], call["phone"] or call["caller"])),
                ("Started", local_time(call["started_at"], ctx.tz)),
                ("Duration", duration(call["started_at"], call["ended_at"])),
                ("Outcome", outcome_badge(call["outcome"])),
                ("Language", call["language"] or ""), ("Model", call["model"] or ""),
                ("Mode", call["mode"])] + [
                (label, full[key]) for label, key in (("Then", "next_action"),
                                                      ("Transferred to", "transfer_to"),
                                                      ("Error", "error")) if full[key]])
    actions = table(("What", "Detail", "Needs you"), [
        (a["kind"], a["detail"], "yes" if a["needs_human"] else "") for a in d["actions"]],
        empty="No tool changed anything.")
    summary = d["summary"]
    summary_html = (t("<pre>{s}</pre>", s=summary["text"]) if summary is not None
                    else t('<p class="empty">No summary yet.</p>'))
    body = t("{facts}<h2>Transcript</h2>{tr}<h2>Latency per turn</h2>{lat}"
             "<h2>Tools run</h2>{act}<h2>Summary</h2>{sum}",
             facts=facts, tr=transcript(d["turns"]), lat=latency(d["timings"]), act=actions,
             sum=summary_html)
    return page(request, "Call", body, "calls")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/calls", calls_list)
    app.router.add_get("/calls/{sid}", call_page)
