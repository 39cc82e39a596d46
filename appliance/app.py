"""The aiohttp application: /healthz plus the routes of each channel."""

from __future__ import annotations

import importlib

from aiohttp import web

from .runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)

# Each module exports `add_routes(app: web.Application, runtime: Runtime) -> None`.
ROUTE_MODULES = (
    "appliance.telephony.webhooks",
    "appliance.telephony.stream",
    "appliance.messaging.webhooks",
    "appliance.actions.routes",
)


def build_app(runtime: Runtime) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
    for name in ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.add_routes(app, runtime)
    return app


async def healthz(request: web.Request) -> web.Response:
    """JSON state of every component; HTTP 200 only when the appliance can take a call."""
    health = request.app[RUNTIME].health()
    return web.json_response(health, status=200 if health["ready"] else 503)
