"""Conversations: WhatsApp and SMS threads per customer, every message with its delivery
status (from the outbox and Twilio's status callbacks)."""

from __future__ import annotations

import sqlite3

from aiohttp import web

from .context import ctx_of
from .html import Markup, badge, join, local_time, t, table, who
from .layout import page

STATE_KIND = {"delivered": "ok", "read": "ok", "sent": "", "pending": "warn", "sending": "warn",
              "unknown": "warn", "undelivered": "bad", "failed": "bad", "cancelled": "bad",
              "received": "", "replied": "ok", "ignored": ""}

THREADS_SQL = """
WITH m AS (SELECT phone, channel, received_at AS at FROM messages_in
           UNION ALL SELECT phone, channel, created_at AS at FROM messages_out)
SELECT m.phone, group_concat(DISTINCT m.channel) AS channels, count(*) AS n, max(m.at) AS last,
       c.id AS customer_id, c.name
FROM m LEFT JOIN customers c ON c.phone = m.phone
GROUP BY m.phone ORDER BY last DESC LIMIT 200
"""


def thread_rows(conn: sqlite3.Connection, phone: str) -> list[dict[str, object]]:
    inbound = conn.execute(
        "SELECT 'in' AS dir, channel, body, text, kind, state, received_at AS at, num_media, "
        "NULL AS error FROM messages_in WHERE phone = ?", (phone,)).fetchall()
    outbound = conn.execute(
        "SELECT 'out' AS dir, channel, body, NULL AS text, purpose AS kind, state, "
        "created_at AS at, 0 AS num_media, coalesce(error, '') AS error FROM messages_out "
        "WHERE phone = ?", (phone,)).fetchall()
    return sorted((dict(r) for r in [*inbound, *outbound]), key=lambda r: str(r["at"]))


def thread_html(messages: list[dict[str, object]], tz) -> Markup:
    items = []
    for m in messages:
        mine = m["dir"] == "out"
        text = m["body"] or m["text"] or ("(media)" if m["num_media"] else "")
        if m["dir"] == "in" and m["text"] and m["text"] != m["body"]:
            text = f"{m['body']} [heard: {m['text']}]" if m["body"] else f"[voice: {m['text']}]"
        status = badge(str(m["state"]), STATE_KIND.get(str(m["state"]), ""))
        error = t(' <span class="heard">{e}</span>', e=m["error"]) if m["error"] else ""
        items.append(t('<div class="turn {cls}"><div class="who">{w} - {ch} - {at} {st}{err}'
                       '</div>{x}</div>', cls="bot" if mine else "user",
                       w="Sent" if mine else "Customer wrote", ch=m["channel"],
                       at=local_time(str(m["at"]), tz), st=status, err=error, x=text))
    return t('<div class="turns">{x}</div>', x=join(items)) if items else \
        t('<p class="empty">No messages.</p>')


async def threads(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    rows = await ctx.db.fetchall(THREADS_SQL)
    body = table(("Customer", "Channels", "Messages", "Last"), [
        (t('<a href="/admin/conversations/{p}">{w}</a>', p=r["phone"].lstrip("+"),
           w=who(r["name"], r["phone"])), r["channels"], r["n"], local_time(r["last"], ctx.tz))
        for r in rows], empty="No WhatsApp or SMS conversations yet.")
    return page(request, "Conversations", body, "conversations")


async def thread(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    digits = request.match_info["digits"]
    if not digits.isdigit():
        raise web.HTTPNotFound(text="no such conversation")
    phone = "+" + digits
    customer = await ctx.db.fetchone("SELECT id, name FROM customers WHERE phone = ?", (phone,))
    messages = await ctx.db.read(lambda c: thread_rows(c, phone))
    if not messages and customer is None:
        raise web.HTTPNotFound(text="no such conversation")
    link = (t('<p><a href="/admin/customers/{i}">Customer record</a></p>', i=customer["id"])
            if customer is not None else Markup(""))
    title = who(customer["name"] if customer is not None else None, phone)
    return page(request, f"Conversation with {title}",
                join([link, thread_html(messages, ctx.tz)]), "conversations")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/conversations", threads)
    app.router.add_get("/conversations/{digits}", thread)
