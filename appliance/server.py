"""`appliance serve`: load everything, then listen; on SIGTERM, end every call cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import AsyncIterator

from aiohttp import web

from .app import build_app
from .config import Settings
from .logs import setup_logging
from .ops.service import lifecycle
from .runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningServer:
    runtime: Runtime
    url: str            # http://host:port actually bound (port 0 in config = any free port)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[RunningServer]:
    """Models load before the port opens; on exit every call is ended and its record closed."""
    runtime = await Runtime.start(settings)
    runner = web.AppRunner(build_app(runtime), handle_signals=False, access_log=None,
                           shutdown_timeout=5.0)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.server.host, settings.server.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield RunningServer(runtime, f"http://{host}:{port}")
    finally:
        await runtime.calls.shutdown()
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
        health = server.runtime.health()
        log.info("listening on %s; %s", server.url, "ready to take calls" if health["ready"]
                 else "NOT ready to take calls: " + "; ".join(health["problems"]))
        async with lifecycle(server.runtime):   # READY=1, watchdog, nightly backup; drain
            await stop.wait()
        log.info("shutting down: ending %d active call(s)",
                 server.runtime.calls.active_count())


def run_server(settings: Settings) -> int:
    setup_logging(settings.server.log_level)
    asyncio.run(serve(settings))
    return 0
