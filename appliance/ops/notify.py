"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.

systemd passes NOTIFY_SOCKET to a Type=notify service: a path, or "@name" for an abstract socket.
Messages are newline-separated KEY=VALUE lines (READY=1, WATCHDOG=1, STOPPING=1, STATUS=...).
Outside systemd the variable is unset and every call is a cheap no-op, so the same code runs
under `appliance serve` in a terminal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + raw[1:] if raw.startswith("@") else raw
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, **fields: str) -> bool:
        """Send KEY=VALUE lines; False (and one warning) when systemd cannot be told."""
        if not self.address:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop: a full receive queue drops this one message.
                sock.setblocking(False)
                sock.sendto(payload, self.address)
        except BlockingIOError:
            log.warning("sd_notify: %s is not being read; dropped %s", self.address.lstrip("\0"),
                        ", ".join(fields))
            return False
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY="1", STATUS=status)

    def stopping(self, status: str) -> bool:
        return self.notify(STOPPING="1", STATUS=status)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)

    async def watchdog(self) -> None:
        """Ping at half the WatchdogSec interval from the event loop: a blocked loop (a model run
        on it by mistake, a deadlock) stops the pings and systemd restarts the service."""
        if not self.watchdog_s or not self.address:
            return
        interval = self.watchdog_s / 2
        while True:
            self.notify(WATCHDOG="1")
            await asyncio.sleep(interval)
