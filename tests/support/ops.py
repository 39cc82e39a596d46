"""Shared by the ops tests: a bound unix datagram socket (what systemd and journald listen on)
and a free loopback port."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path


def datagram_listener(path: Path | str, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(timeout_s)
    return sock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def listening(path: Path) -> Iterator[tuple[Path, socket.socket]]:
    sock = datagram_listener(path)
    try:
        yield path, sock
    finally:
        sock.close()
