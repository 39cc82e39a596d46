"""`appliance serve`: load everything, then listen; on SIGTERM, end every call cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from .app import build_app
from .compose import Services, compose
from .config import Settings
from .logs import setup_logging
from .memory import limit_malloc_arenas
from .ops.service import lifecycle

log = logging.getLogger(__name__)


Adapt = Callable[[Services], Awaitable[Services]]   # e.g. bench's instant stand-ins


@dataclass(frozen=True)
class RunningServer:
    services: Services
    url: str            # http://host:port actually bound (port 0 in config = any free port)


@contextlib.asynccontextmanager
async def running(settings: Settings, adapt: Adapt | None = None
                  ) -> AsyncIterator[RunningServer]:
    """Models load before the port opens; on exit every call is ended and its record closed.
    `adapt` may replace services (a benchmark's stand-ins) before the app is built."""
    limit_malloc_arenas()           # before compose() starts the model threads
    services = await compose(settings)
    if adapt is not None:
        services = await adapt(services)
    runtime = services.runtime
    runner = web.AppRunner(build_app(services), handle_signals=False, access_log=None,
                           shutdown_timeout=5.0)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.server.host, settings.server.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield RunningServer(services, f"http://{host}:{port}")
    finally:
        await services.calls.shutdown()
        await runner.cleanup()
        await runtime.close()


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set, or SIGINT/SIGTERM."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with running(settings) as server:
        health = server.services.health()
        log.info("listening on %s; %s", server.url, "ready to take calls" if health["ready"]
                 else "NOT ready to take calls: " + "; ".join(health["problems"]))
        async with lifecycle(server.services):   # READY=1, watchdog, nightly backup; drain
            await stop.wait()
        log.info("shutting down: ending %d active call(s)",
                 server.services.calls.active_count())


def run_server(settings: Settings) -> int:
    setup_logging(settings.server.log_level)
    asyncio.run(serve(settings))
    return 0
