"""What a failed send means for its outbox row, and how long to wait before the next try."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import aiohttp
from twilio.base.exceptions import TwilioRestException

from . import window
from .rows import OutRow


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 2.0            # first retry after about this long
    cap_s: float = 600.0           # never wait longer than this between attempts
    max_attempts: int = 10         # then the row fails (2 s ... 10 min: about 40 minutes)
    jitter: float = 0.2            # +-20 %

    def delay_s(self, attempts: int, rand: float | None = None) -> float:
        rand = random.random() if rand is None else rand
        delay = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        return delay * (1 + self.jitter * (2 * rand - 1))


@dataclass(frozen=True)
class Failure:
    """What a failed request means for the row."""

    action: str          # retry (certainly not sent), unknown (maybe sent), failed, template
    code: int | None
    message: str


def classify_failure(exc: BaseException, row: OutRow, template_sid: str) -> Failure:
    if isinstance(exc, TwilioRestException):
        code = exc.code if isinstance(exc.code, int) else None
        message = f"Twilio HTTP {exc.status}" + (f" error {code}" if code else "") + \
                  f": {exc.msg}"
        if code == window.ERROR_OUTSIDE_WINDOW:
            if row.channel == "whatsapp" and row.content_sid is None and template_sid:
                return Failure("template", code, message)
            return Failure("failed", code, message + " (outside WhatsApp's 24-hour window and "
                                                     "no template to send instead)")
        if exc.status == 429 or exc.status in (401, 403):
            return Failure("retry", code, message)
        if exc.status >= 500:
            return Failure("unknown", code, message)
        return Failure("failed", code, message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Failure("retry", None, f"cannot connect to Twilio: {exc}")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return Failure("unknown", None, "no answer from Twilio in time")
    return Failure("unknown", None, f"{type(exc).__name__}: {exc}")
