"""`GET /calendar/{token}.ics`: the appointments as a feed Google Calendar, Outlook or Apple
Calendar can subscribe to ("add calendar from URL").

The token: the environment variable CALENDAR_FEED_TOKEN when set (at least 16 characters);
otherwise one generated on first start and kept in the database (`actions_meta`), so the URL
stays the same across restarts. `appliance calendar url` prints the URL. The token is compared
in constant time; a wrong one gets a plain 404. The feed covers the last 30 days and the next
year, booked appointments only; customers appear by name and the last digits of their number.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Mapping

from aiohttp import web

from ..config import Settings
from ..store.db import Database
from .appointments import Appointments
from .calendar import CalendarRules
from .ics import render
from .services import ActionServices
from .settings import ActionSettings

log = logging.getLogger(__name__)

TOKEN_ENV = "CALENDAR_FEED_TOKEN"
TOKEN_KEY = "calendar_feed_token"
PAST = timedelta(days=30)
AHEAD = timedelta(days=366)


class FeedTokenError(Exception):
    pass


def token_from_env(environ: Mapping[str, str]) -> str | None:
    value = environ.get(TOKEN_ENV, "").strip()
    if not value:
        return None
    if len(value) < 16 or not all(c.isalnum() or c in "-_" for c in value):
        raise FeedTokenError(f"{TOKEN_ENV} must be at least 16 letters, digits, - or _")
    return value


def _stored_token(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM actions_meta WHERE key = ?", (TOKEN_KEY,)).fetchone()
    if row is not None:
        return str(row["value"])
    token = secrets.token_urlsafe(24)
    conn.execute("INSERT INTO actions_meta(key, value) VALUES (?, ?)", (TOKEN_KEY, token))
    log.info("calendar feed token generated and stored; `appliance calendar url` shows the URL")
    return token


async def feed_token(db: Database, environ: Mapping[str, str] = os.environ) -> str:
    """The environment's token, else the stored one (generated the first time)."""
    return token_from_env(environ) or await db.write(_stored_token)


def feed_token_sync(db: Database, environ: Mapping[str, str] = os.environ) -> str:
    return token_from_env(environ) or db.write_sync(_stored_token)


def feed_url(public_url: str, token: str) -> str:
    return f"{public_url or 'http://127.0.0.1:1337'}/calendar/{token}.ics"


def add_routes(app: web.Application, settings: Settings, db: Database | None,
               services: ActionServices | None, environ: Mapping[str, str] | None = None
               ) -> None:
    env = os.environ if environ is None else environ
    state: dict[str, str | bool] = {}
    try:
        token_from_env(env)
    except FeedTokenError as exc:
        log.error("calendar feed disabled: %s", exc)
        state["disabled"] = True

    async def token() -> str:
        if "token" not in state:
            assert db is not None
            state["token"] = await feed_token(db, env)
        return str(state["token"])

    async def calendar_feed(request: web.Request) -> web.Response:
        if db is None:
            raise web.HTTPServiceUnavailable(text="database unavailable")
        given = request.match_info["token"].encode()
        if state.get("disabled") or not hmac.compare_digest(given, (await token()).encode()):
            raise web.HTTPNotFound()
        if services is not None:
            appointments, now = services.appointments, services.now()
        else:
            config = ActionSettings.of(settings)
            rules = CalendarRules.from_settings(config.appointments,
                                                settings.business.timezone)
            appointments, now = Appointments(db, rules), datetime.now(timezone.utc)
        found = await appointments.between(now - PAST, now + AHEAD)
        body = render(found, calendar_name=f"{settings.business.name} appointments",
                      now=now)
        return web.Response(body=body.encode("utf-8"),
                            headers={"Content-Type": "text/calendar; charset=utf-8",
                                     "Cache-Control": "private, max-age=300",
                                     "Content-Disposition": 'inline; filename="appointments.ics"'})

    app.router.add_get("/calendar/{token}.ics", calendar_feed)
