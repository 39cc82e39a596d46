"""The aiohttp application: /healthz plus the routes of each channel."""

from __future__ import annotations

from aiohttp import web

from . import admin
from .actions import routes as calendar_routes
from .messaging import webhooks as messaging_routes
from .runtime import Runtime
from .telephony import stream as media_stream_routes
from .telephony import webhooks as voice_routes

RUNTIME = web.AppKey("runtime", Runtime)


def build_app(runtime: Runtime) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
    for module in (voice_routes, media_stream_routes, messaging_routes, calendar_routes):
        module.add_routes(app, runtime)
    admin.setup(app, runtime)
    return app


async def healthz(request: web.Request) -> web.Response:
    """JSON state of every component; HTTP 200 only when the appliance can take a call."""
    health = request.app[RUNTIME].health()
    return web.json_response(health, status=200 if health["ready"] else 503)
