"""journald's native protocol without libsystemd: one datagram per record to
/run/systemd/journal/socket, so fields such as CALL_SID are indexed
(`journalctl -u appliance CALL_SID=CA...`).

Wire format (systemd.journal-fields(7), "native protocol"): KEY=VALUE lines; a value holding a
newline is sent as KEY, newline, its length as a 64-bit little-endian integer, the bytes, newline.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from collections.abc import Mapping
from pathlib import Path

SOCKET = "/run/systemd/journal/socket"
MAX_VALUE = 48 * 1024          # keeps a datagram far below the socket's limit
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
             (logging.INFO, 6), (logging.DEBUG, 7))


def priority(levelno: int) -> int:
    for threshold, value in _PRIORITY:
        if levelno >= threshold:
            return value
    return 7


def encode(fields: Mapping[str, str]) -> bytes:
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")[:MAX_VALUE]
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def journal_wanted(environ: Mapping[str, str] | None = None, socket_path: str = SOCKET) -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM=dev:inode of
    it) and the native socket is there."""
    env = os.environ if environ is None else environ
    stream = env.get("JOURNAL_STREAM", "")
    if not stream or not Path(socket_path).exists():
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return True
    return stream == f"{st.st_dev}:{st.st_ino}" or "APPLIANCE_FORCE_JOURNAL" in env


def id_fields(context_id: str) -> dict[str, str]:
    """CALL_SID for a call (Twilio CA...), MESSAGE_SID for a message (SM/MM...)."""
    if context_id.startswith("CA"):
        return {"CALL_SID": context_id}
    if context_id[:2] in ("SM", "MM"):
        return {"MESSAGE_SID": context_id}
    return {}


class JournalHandler(logging.Handler):
    """Formats like the stderr handler (minus the time stamp journald adds) and falls back to
    stderr when the socket is gone."""

    def __init__(self, socket_path: str = SOCKET, identifier: str = "appliance") -> None:
        super().__init__()
        self.socket_path = socket_path
        self.identifier = identifier
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {"MESSAGE": self.format(record), "PRIORITY": str(priority(record.levelno)),
                      "SYSLOG_IDENTIFIER": self.identifier, "LOGGER": record.name,
                      "CODE_FILE": record.pathname, "CODE_LINE": str(record.lineno),
                      "CODE_FUNC": record.funcName,
                      **id_fields(getattr(record, "ctx", "-"))}
            self._sock.sendto(encode(fields), self.socket_path)
        except OSError:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()
