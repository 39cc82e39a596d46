"""One log line per event, with the call or message id on every record, phone numbers masked.

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
    def __init__(self, mask: bool) -> None:
        super().__init__()
        self.mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        record.ctx = _context_id.get()
        if self.mask and record.levelno >= logging.INFO:
            message = record.getMessage()
            masked = mask_text(message)
            if masked != message:
                record.msg, record.args = masked, None
        return True


def setup_logging(level: str = "info", stream=sys.stderr) -> None:
    """Configure the root logger once: `time level [id] logger: message`."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(ctx)s] %(name)s: "
                                           "%(message)s"))
    handler.addFilter(_ContextFilter(mask=numeric >= logging.INFO))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for noisy in ("aiohttp.access", "httpx", "httpcore", "google_genai", "twilio"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
