"""The page shell: head, navigation, the stylesheet (inlined: the login page needs it before
any session exists, and nothing under /admin is served without one) and security headers."""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

from .html import Markup, csrf_field, join, t

NAV = (("today", "/admin/", "Today"), ("calls", "/admin/calls", "Calls"),
       ("conversations", "/admin/conversations", "Conversations"),
       ("customers", "/admin/customers", "Customers"),
       ("appointments", "/admin/appointments", "Appointments"),
       ("kb", "/admin/kb", "Knowledge"), ("health", "/admin/health", "Health"),
       ("settings", "/admin/settings", "Settings"))

CSP = ("default-src 'self'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


@cache
def stylesheet() -> str:
    return resources.files("appliance.admin").joinpath("static/admin.css").read_text("utf-8")


def shell(title: str, body: Markup, *, active: str = "", csrf: str | None = None,
          business: str = "") -> Markup:
    nav = script = Markup("")
    if csrf is not None:        # logged in (the login page loads nothing under /admin)
        script = t('<script src="/admin/static/admin.js" defer></script>')
        links = join(t('<a href="{h}" class="{c}">{x}</a>', h=href, x=label,
                       c="on" if key == active else "") for key, href, label in NAV)
        nav = t('<nav>{links}<form method="post" action="/admin/logout" class="logout">{f}'
                '<button type="submit">Log out</button></form></nav>',
                links=links, f=csrf_field(csrf))
    return t('<!doctype html><html lang="en"><head><meta charset="utf-8">'
             '<meta name="viewport" content="width=device-width, initial-scale=1">'
             '<title>{title} - {biz}</title><style>{css}</style>{script}</head>'
             '<body><header><span class="brand">{biz}</span>{nav}</header>'
             '<main><h1>{title}</h1>{body}</main></body></html>',
             title=title, biz=business or "Receptionist", css=Markup(stylesheet()), nav=nav,
             script=script, body=body)


def secure(resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def page(request: web.Request, title: str, body: Markup, active: str,
         status: int = 200) -> web.Response:
    from .context import ctx_of, session_of

    ctx = ctx_of(request)
    html = shell(title, body, active=active, csrf=session_of(request).csrf_token,
                 business=ctx.services.settings.business.name)
    return web.Response(text=html, content_type="text/html", status=status)
