"""CSRF: every POST under /admin carries the session's token, or it is refused (403).

The token comes from the form field `csrf`, the `X-CSRF-Token` header (scripts), or for
multipart uploads (which the handler streams, so the body is not parsed here) the `csrf` query
parameter. The login form, before any session exists, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from .sessions import Session

LOGIN_COOKIE = "appliance_admin_login"


def _same(a: str | None, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())


async def submitted_token(request: web.Request) -> str | None:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type == "multipart/form-data":
        return request.query.get("csrf")
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        value = form.get("csrf")
        return value if isinstance(value, str) else None
    return None


async def check(request: web.Request, session: Session) -> None:
    if not _same(await submitted_token(request), session.csrf_token):
        raise web.HTTPForbidden(text="The form was not sent by this dashboard (missing or "
                                     "wrong CSRF token). Reload the page and try again.")


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


async def check_login(request: web.Request) -> None:
    cookie = request.cookies.get(LOGIN_COOKIE)
    if cookie is None or not _same(await submitted_token(request), cookie):
        raise web.HTTPForbidden(text="The login form expired (missing or wrong CSRF token). "
                                     "Reload the login page and try again.")
