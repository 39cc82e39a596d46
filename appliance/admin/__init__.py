"""The owner's dashboard at /admin: login, live calls, calls, conversations, customers,
appointments, knowledge base, health, settings; and /metrics.

    admin.setup(app, services)     # in app.build_app, once the channels' routes are added

Everything is a sub-application mounted at /admin whose middleware (auth.guard) refuses any
request without a session, and any POST without the session's CSRF token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from . import (
    auth,
    cfaccess,
    views_appointments,
    views_calls,
    views_conversations,
    views_customers,
    views_kb,
    views_system,
    views_today,
)
from .context import CTX, AdminContext
from .errors import RecentErrors
from .kbjobs import KbJobs
from .metrics import metrics
from .feed import LiveFeed
from .live import LiveCalls
from .sessions import Limits, Sessions

if TYPE_CHECKING:
    from ..compose import Services


def setup(app: web.Application, services: Services, *, clock: Callable[[], float] = time.time,
          limits: Limits | None = None) -> AdminContext | None:
    """Mount the dashboard; without a database there is nothing to show (None)."""
    db = services.db
    if db is None:
        return None

    ctx = AdminContext(
        services=services, db=db, sessions=Sessions(db, clock, limits or Limits()),
        live=LiveCalls(db, clock),
        kb_jobs=KbJobs(db, services.settings.kb.directory, services.embedder),
        errors=RecentErrors(), access=cfaccess.AccessVerifier.from_environ(clock=clock),
        clock=clock)
    unsubscribe = services.call_events.subscribe(LiveFeed(ctx.live))  # streamed calls, live
    admin = web.Application(middlewares=[auth.guard])
    admin[CTX] = ctx
    for module in (auth, views_today, views_calls, views_conversations, views_customers,
                   views_appointments, views_kb, views_system):
        module.add_routes(admin)
    admin.router.add_static("/static", _static_dir(), show_index=False)

    async def close(_app: web.Application) -> None:
        unsubscribe()
        await ctx.live.close()

    async def cleanup(_app: web.Application) -> None:
        await ctx.kb_jobs.wait()
        ctx.errors.uninstall()

    admin.on_shutdown.append(close)
    admin.on_cleanup.append(cleanup)
    app.add_subapp("/admin", admin)
    app[CTX] = ctx
    app.router.add_get("/admin", _to_dashboard)
    app.router.add_get("/metrics", metrics)
    ctx.errors.install()

    return ctx


async def _to_dashboard(request: web.Request) -> web.Response:
    raise web.HTTPFound("/admin/")


def _static_dir():
    from importlib import resources

    return resources.files("appliance.admin").joinpath("static")
