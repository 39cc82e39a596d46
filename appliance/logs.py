"""One log line per event, with the call or message id on every record, phone numbers masked.

Under systemd the records go to journald natively (appliance/ops/journal.py), with the id as a
field: `journalctl -u appliance CALL_SID=CA...`.

The id comes from a context variable set by whoever handles a call or a message
(`with log_context("CA123")`); asyncio copies context into tasks, so every record of that call,
in any of its tasks, carries it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from typing import Iterator

_context_id: contextvars.ContextVar[str] = contextvars.ContextVar("log_context_id", default="-")
# E.164 numbers ("+972501234567", also after "whatsapp:") and bare runs of 9-15 digits; not dates,
# times or ids with letters.
_PHONE = re.compile(r"(?<![\w+])(\+\d{7,15}|\d{9,15})(?!\w)")


def mask_phone(number: str) -> str:
    """+972501234567 -> +97250*****67: enough to tell callers apart, not enough to dial."""
    digits = number.strip()
    if len(digits) <= 6:
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 8) + digits[-2:]


def mask_text(text: str) -> str:
    return _PHONE.sub(lambda m: mask_phone(m.group(1)), text)


@contextlib.contextmanager
def log_context(identifier: str) -> Iterator[None]:
    token = _context_id.set(identifier)
    try:
        yield
    finally:
        _context_id.reset(token)


def current_context() -> str:
    return _context_id.get()


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.ctx = _context_id.get()
        return True


class MaskingFormatter(logging.Formatter):
    """Masks phone numbers in the whole formatted record (message, arguments, traceback) at
    INFO and above, whatever the configured level; DEBUG records are left whole for debugging."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return mask_text(text) if record.levelno >= logging.INFO else text


def setup_logging(level: str = "info", stream=sys.stderr,
                  journal: bool | None = None) -> None:
    """Configure the root logger once. Under systemd (stderr is the journal) records go to
    journald natively with CALL_SID/MESSAGE_SID fields; else `time level [id] logger: message`
    lines to `stream`. `journal` forces either (None: detect)."""
    from .ops.journal import JournalHandler, journal_wanted

    numeric = getattr(logging, level.upper(), logging.INFO)
    use_journal = journal_wanted() if journal is None else journal
    handler: logging.Handler
    if use_journal:
        handler = JournalHandler()
        handler.setFormatter(MaskingFormatter("[%(ctx)s] %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s [%(ctx)s] %(name)s: "
                                              "%(message)s"))
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    for noisy in ("aiohttp.access", "httpx", "httpcore", "google_genai", "twilio"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
