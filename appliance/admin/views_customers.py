"""Customers: search, the record with its history across channels, edit, delete on request."""

from __future__ import annotations

import sqlite3

from aiohttp import web

from . import customers_store
from .context import ctx_of, session_of
from .html import Markup, csrf_field, join, kv, local_time, t, table, who
from .layout import page
from .views_calls import call_rows, calls_table

BLOCK_PHONE = "owner:blocked"      # the pseudo-customer holding blocked slots (appointments)


def search_rows(conn: sqlite3.Connection, q: str) -> list[sqlite3.Row]:
    digits = "".join(ch for ch in q if ch.isdigit())
    sql = ("SELECT c.*, (SELECT count(*) FROM turns t WHERE t.customer_id = c.id) AS turns "
           "FROM customers c WHERE c.phone <> ?")
    args: list[object] = [BLOCK_PHONE]
    if q.strip():
        sql += " AND (c.name LIKE ? ESCAPE '\\'" + (" OR c.phone LIKE ?" if digits else "") + ")"
        like = q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args.append(f"%{like}%")
        if digits:
            args.append(f"%{digits}%")
    return conn.execute(sql + " ORDER BY c.last_contact DESC LIMIT 100", args).fetchall()


async def customers(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    q = request.query.get("q", "")[:100]
    rows = await ctx.db.read(lambda c: search_rows(c, q))
    form = t('<form method="get" class="row"><label>Name or number '
             '<input type="search" name="q" value="{q}"></label>'
             '<button type="submit">Search</button></form>', q=q)
    notice = (t('<p class="notice">{m}</p>', m=request.query["done"])
              if "done" in request.query else Markup(""))
    body = table(("Customer", "Language", "Turns", "Last contact"), [
        (t('<a href="/admin/customers/{i}">{w}</a>', i=r["id"], w=who(r["name"], r["phone"])),
         r["language"] or "", r["turns"], local_time(r["last_contact"], ctx.tz))
        for r in rows], empty="No customer matches." if q else "No customers yet.")
    return page(request, "Customers", join([notice, form, body]), "customers")


def _record(conn: sqlite3.Connection, cid: int) -> dict | None:
    customer = conn.execute("SELECT * FROM customers WHERE id = ?", (cid,)).fetchone()
    if customer is None:
        return None
    return {"c": customer,
            "calls": call_rows(conn, "WHERE c.customer_id = ?", (cid,), limit=50),
            "turns": conn.execute("SELECT channel, role, text, created_at FROM turns WHERE "
                                  "customer_id = ? AND role <> 'tool' ORDER BY id DESC LIMIT 60",
                                  (cid,)).fetchall(),
            "appointments": conn.execute("SELECT start_utc, status, note FROM appointments "
                                         "WHERE customer_id = ? ORDER BY start_utc DESC LIMIT 20",
                                         (cid,)).fetchall()}


async def record(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    ctx = ctx_of(request)
    cid = int(request.match_info["id"])
    d = await ctx.db.read(lambda c: _record(c, cid))
    if d is None:
        raise web.HTTPNotFound(text=f"no customer {cid}")
    c, token = d["c"], session_of(request).csrf_token
    facts = kv([("Number", c["phone"]), ("Name", c["name"] or ""),
                ("Language", c["language"] or ""), ("Opted out", "yes" if c["opted_out"] else
                                                    "no"), ("Notes", c["notes"]),
                ("First contact", local_time(c["first_contact"], ctx.tz)),
                ("Last contact", local_time(c["last_contact"], ctx.tz))])
    edit = t('<form method="post" action="/admin/customers/{i}" class="row">{f}'
             '<label>Name <input name="name" value="{n}"></label>'
             '<label>Language <input name="language" value="{l}" size="3"></label>'
             '<button type="submit">Save</button></form>', i=cid, f=csrf_field(token),
             n=c["name"] or "", l=c["language"] or "")
    history = table(("When", "Channel", "Who", "Text"), [
        (local_time(r["created_at"], ctx.tz), r["channel"],
         "customer" if r["role"] == "user" else "bot", r["text"]) for r in d["turns"]],
        empty="Nothing said yet.")
    appts = table(("When", "Status", "For"), [
        (local_time(a["start_utc"], ctx.tz), a["status"], a["note"]) for a in d["appointments"]],
        empty="No appointments.")
    delete = t('<form method="post" action="/admin/customers/{i}/delete" data-confirm='
               '"Delete this customer and all their calls, messages and appointments? This '
               'cannot be undone.">{f}<button type="submit" class="danger">Delete customer and '
               'all their data</button></form>', i=cid, f=csrf_field(token))
    body = t('{err}{facts}<h2>Edit</h2>{edit}<h2>Calls</h2>{calls}'
             '<p><a href="/admin/conversations/{digits}">WhatsApp / SMS thread</a></p>'
             '<h2>History, all channels (newest first)</h2>{hist}<h2>Appointments</h2>{appts}'
             '<h2>Delete on request</h2>{delete}',
             err=t('<p class="problem">{e}</p>', e=error) if error else "", facts=facts,
             edit=edit, calls=calls_table(d["calls"], ctx.tz), digits=c["phone"].lstrip("+"),
             hist=history, appts=appts, delete=delete)
    return page(request, who(c["name"], c["phone"]), body, "customers", status=status)


async def save(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    cid = int(request.match_info["id"])
    form = await request.post()
    try:
        await ctx.db.write(lambda c: customers_store.edit(
            c, cid, str(form.get("name", "")), str(form.get("language", ""))))
    except customers_store.EditRefused as exc:
        return await record(request, str(exc), status=400)
    raise web.HTTPSeeOther(f"/admin/customers/{cid}")


async def delete(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    cid = int(request.match_info["id"])
    try:
        await ctx.db.write(lambda c: customers_store.delete(c, cid))
    except customers_store.EditRefused as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    raise web.HTTPSeeOther("/admin/customers?done=The+customer+and+all+their+data+were+deleted.")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/customers", customers)
    app.router.add_get(r"/customers/{id:\d+}", record)
    app.router.add_post(r"/customers/{id:\d+}", save)
    app.router.add_post(r"/customers/{id:\d+}/delete", delete)
