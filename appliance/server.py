"""`appliance serve`: load everything, then listen; on SIGTERM, end every call cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from .app import build_app
from .config import Settings
from .logs import setup_logging
from .runtime import Runtime

log = logging.getLogger(__name__)


async def serve(settings: Settings, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM). Models load before the port opens."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    runtime = await Runtime.start(settings)
    runner = web.AppRunner(build_app(runtime), handle_signals=False, access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.server.host, settings.server.port)
        await site.start()
        health = runtime.health()
        log.info("listening on http://%s:%s; %s", settings.server.host, settings.server.port,
                 "ready to take calls" if health["ready"] else
                 "NOT ready to take calls: " + "; ".join(health["problems"]))
        if ready:
            ready.set()
        await stop.wait()
        log.info("shutting down: ending %d active call(s)", runtime.calls.active_count())
    finally:
        await runtime.calls.shutdown()
        await runner.cleanup()
        await runtime.close()


def run_server(settings: Settings) -> int:
    setup_logging(settings.server.log_level)
    asyncio.run(serve(settings))
    return 0
