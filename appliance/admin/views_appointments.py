"""Appointments: a week at a time, move or cancel (the customer is told), block a slot."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import quote

from aiohttp import web

from ..actions.appointments import Appointment
from ..actions.calendar import NotBookable
from ..actions.services import ActionServices
from . import appointments_owner as owner
from .context import ctx_of, session_of
from .html import Markup, csrf_field, join, t, who
from .layout import page
from .views_customers import BLOCK_PHONE


def services_of(request: web.Request) -> ActionServices:
    services = ctx_of(request).services.actions
    if not isinstance(services, ActionServices):
        raise web.HTTPServiceUnavailable(text="appointments are not available (the business "
                                              "actions did not start; see Health)")
    return services


def _week_start(request: web.Request, today: date) -> date:
    try:
        return date.fromisoformat(request.query.get("from", ""))
    except ValueError:
        return today


def _appt(a: Appointment, s: ActionServices, token: str, back: str) -> Markup:
    local = a.start.astimezone(s.rules.tz)
    blocked = a.customer_phone == BLOCK_PHONE
    cancel_label = "Unblock" if blocked else "Cancel and tell the customer"
    move = Markup("") if blocked else t(
        '<form method="post" action="/admin/appointments/{i}/move" class="row">{f}'
        '<input type="hidden" name="back" value="{b}">'
        '<input type="datetime-local" name="when" value="{v}" step="60" required>'
        '<button type="submit">Move</button></form>',
        i=a.id, f=csrf_field(token), b=back, v=local.strftime("%Y-%m-%dT%H:%M"))
    return t('<div class="appt {cls}"><b>{hm}</b> {who}<div class="heard">{note}</div>'
             '<details><summary>Change</summary>{move}'
             '<form method="post" action="/admin/appointments/{i}/cancel" data-confirm="{q}">'
             '{f}<input type="hidden" name="back" value="{b}">'
             '<button type="submit" class="secondary">{cl}</button></form></details></div>',
             cls="blocked" if blocked else "", hm=local.strftime("%H:%M"),
             who="Blocked" if blocked else who(a.customer_name, a.customer_phone),
             note=a.note, move=move, i=a.id, f=csrf_field(token), b=back, cl=cancel_label,
             q="Unblock this slot?" if blocked else "Cancel this appointment? The customer "
                                                    "will be told.")


async def week(request: web.Request) -> web.Response:
    s = services_of(request)
    tz = s.rules.tz
    start_day = _week_start(request, s.now().astimezone(tz).date())
    start = datetime.combine(start_day, time(0), tz)
    appts = await s.appointments.between(start.astimezone(UTC),
                                         (start + timedelta(days=7)).astimezone(UTC))
    token, back = session_of(request).csrf_token, request.path_qs
    days = []
    for i in range(7):
        day = start_day + timedelta(days=i)
        mine = [a for a in appts if a.start.astimezone(tz).date() == day]
        closed = "" if s.rules.is_open_day(day) else " (closed)"
        days.append(t('<div class="day"><h3>{d}{c}</h3>{x}</div>', d=day.strftime("%a %d %b"),
                      c=closed, x=join(_appt(a, s, token, back) for a in mine)))
    nav = t('<p class="row"><a href="/admin/appointments?from={p}">Previous week</a>'
            '<a href="/admin/appointments">This week</a>'
            '<a href="/admin/appointments?from={n}">Next week</a></p>',
            p=(start_day - timedelta(days=7)).isoformat(),
            n=(start_day + timedelta(days=7)).isoformat())
    block = t('<h2>Block a slot</h2><form method="post" action="/admin/appointments/block" '
              'class="row">{f}<input type="hidden" name="back" value="{b}">'
              '<label>Slot start <input type="datetime-local" name="when" step="60" required>'
              '</label><label>Why <input name="note" placeholder="e.g. day off"></label>'
              '<button type="submit">Block</button></form>', f=csrf_field(token), b=back)
    message = request.query.get("msg", "")
    kind = "problem" if request.query.get("bad") else "notice"
    notice = t('<p class="{k}">{m}</p>', k=kind, m=message) if message else Markup("")
    return page(request, "Appointments", join([notice, nav, t('<div class="week">{d}</div>',
                                                              d=join(days)), block]),
                "appointments")


def _back(form, message: str, bad: bool = False) -> web.HTTPSeeOther:
    back = str(form.get("back", "/admin/appointments"))
    if not back.startswith("/admin/appointments"):
        back = "/admin/appointments"
    back = back.split("&msg=")[0].split("?msg=")[0]
    sep = "&" if "?" in back else "?"
    return web.HTTPSeeOther(f"{back}{sep}msg={quote(message)}" + ("&bad=1" if bad else ""))


def _when(form) -> datetime:
    try:
        return datetime.fromisoformat(str(form.get("when", "")))
    except ValueError:
        raise NotBookable("give the date and time as YYYY-MM-DDTHH:MM") from None


async def change(request: web.Request) -> web.Response:
    s = services_of(request)
    form = await request.post()
    action = request.match_info.get("action", "block")
    try:
        if action == "move":
            done = await owner.move(s, int(request.match_info["id"]), _when(form))
        elif action == "cancel":
            done = await owner.cancel(s, int(request.match_info["id"]))
        else:
            done = await owner.block(s, _when(form), str(form.get("note", "")))
    except NotBookable as exc:
        raise _back(form, f"Not done: {exc}", bad=True) from None
    raise _back(form, done.message, bad=done.delivery is not None and not done.delivery.ok)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/appointments", week)
    app.router.add_post(r"/appointments/{id:\d+}/{action:move|cancel}", change)
    app.router.add_post("/appointments/block", change)
