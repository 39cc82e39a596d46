"""Who may see /admin: the session guard (a middleware on the /admin sub-application), the
login and logout pages, and the client address used by the rate limit.

Pages without a session redirect to the login page; API and live (SSE) routes, and any POST,
answer 401. Every POST also needs the session's CSRF token (csrf.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from . import csrf, passwords
from .context import SESSION, AdminContext, ctx_of
from .html import Markup, t
from .layout import secure, shell

log = logging.getLogger(__name__)

COOKIE = "appliance_admin"
LOGIN_PATH = "/admin/login"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def client_ip(request: web.Request) -> str:
    """The browser's address. Behind Cloudflare Tunnel every request comes from loopback and
    CF-Connecting-IP names the real client; from anywhere else that header is not trusted."""
    peer = request.remote or ""
    if peer in ("127.0.0.1", "::1"):
        return request.headers.get("CF-Connecting-IP", peer)[:64]
    return peer


def _wants_json(request: web.Request) -> bool:
    return (request.path.startswith("/admin/api/") or request.method != "GET"
            or "text/event-stream" in request.headers.get("Accept", ""))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = ctx_of(request)
    if request.path == LOGIN_PATH:
        return secure(await handler(request))
    session = await ctx.sessions.get(request.cookies.get(COOKIE))
    new_cookie: str | None = None
    if session is None and ctx.access is not None:
        identity = await ctx.access.identity(request.headers.get(ctx.access.HEADER))
        if identity is not None:
            new_cookie, session = await ctx.sessions.create("cloudflare_access",
                                                            client_ip(request))
            log.info("admin: signed in through Cloudflare Access")
    if session is None:
        if _wants_json(request):
            raise web.HTTPUnauthorized(text="log in at /admin/login first",
                                       headers={"Cache-Control": "no-store"})
        raise web.HTTPFound(f"{LOGIN_PATH}?next={quote(request.path_qs)}")
    if request.method == "POST":
        await csrf.check(request, session)
    request[SESSION] = session
    resp = await handler(request)
    if new_cookie is not None:
        _set_cookie(resp, new_cookie, ctx)
    return secure(resp)


def _set_cookie(resp: web.StreamResponse, token: str, ctx: AdminContext) -> None:
    resp.set_cookie(COOKIE, token, path="/", httponly=True, secure=True, samesite="Strict",
                    max_age=int(ctx.sessions.limits.session_s))


def _login_page(message: str, token: str, next_url: str, has_password: bool,
                business: str) -> Markup:
    if not has_password:
        body = t('<p class="problem">No password is set yet. On the box, run '
                 '<code>appliance admin set-password</code>, then reload this page.</p>')
    else:
        body = t('{msg}<form method="post" action="/admin/login" class="login">'
                 '<input type="hidden" name="csrf" value="{tok}">'
                 '<input type="hidden" name="next" value="{nxt}">'
                 '<label>Password <input type="password" name="password" autofocus '
                 'autocomplete="current-password" required></label>'
                 '<button type="submit">Log in</button></form>',
                 msg=t('<p class="problem">{m}</p>', m=message) if message else "",
                 tok=token, nxt=next_url)
    return shell("Log in", body, business=business)


def _safe_next(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return text if text.startswith("/admin") and "//" not in text and "\\" not in text \
        else "/admin/"


async def login_form(request: web.Request, message: str = "", status: int = 200
                     ) -> web.Response:
    ctx = ctx_of(request)
    has_password = await ctx.db.read(passwords.load) is not None
    token = csrf.new_login_token()
    resp = web.Response(text=_login_page(message, token, _safe_next(request.query.get("next")),
                                         has_password, ctx.services.settings.business.name),
                        content_type="text/html", status=status)
    resp.set_cookie(csrf.LOGIN_COOKIE, token, path=LOGIN_PATH, httponly=True, secure=True,
                    samesite="Strict", max_age=3600)
    return resp


async def login(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    await csrf.check_login(request)
    form = await request.post()
    ip = client_ip(request)
    wait = await ctx.sessions.wait_before_login(ip)
    if wait > 0:
        log.warning("admin: login refused for %.0f s more (too many failures)", wait)
        resp = await login_form(request, f"Too many failed attempts. Try again in "
                                         f"{int(wait) + 1} seconds.", status=429)
        resp.headers["Retry-After"] = str(int(wait) + 1)
        return resp
    stored = await ctx.db.read(passwords.load)
    password = form.get("password")
    ok = stored is not None and isinstance(password, str) and await asyncio.to_thread(
        passwords.verify, password, stored)
    await ctx.sessions.record_attempt(ip, ok)
    if not ok:
        log.warning("admin: wrong password")
        await asyncio.sleep(ctx.sessions.limits.failure_delay_s)
        return await login_form(request, "Wrong password.", status=401)
    token, _session = await ctx.sessions.create("password", ip)
    log.info("admin: logged in")
    resp = web.HTTPSeeOther(_safe_next(form.get("next")))
    _set_cookie(resp, token, ctx)
    resp.del_cookie(csrf.LOGIN_COOKIE, path=LOGIN_PATH)
    raise resp


async def logout(request: web.Request) -> web.Response:
    await ctx_of(request).sessions.end(request.cookies.get(COOKIE))
    resp = web.HTTPSeeOther(LOGIN_PATH)
    resp.del_cookie(COOKIE, path="/")
    raise resp


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
