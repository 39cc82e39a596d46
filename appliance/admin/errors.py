"""The last errors the process logged, for the Health page, and their count per stage.

A logging handler on the root logger keeps the newest ERROR records (masked, as in the logs);
the stage is the first package under `appliance` (stt, llm, tts, call, messaging ...).
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass

from ..logs import mask_text


@dataclass(frozen=True)
class LoggedError:
    at: float              # unix seconds
    stage: str
    logger: str
    message: str


def stage_of(logger_name: str) -> str:
    parts = logger_name.split(".")
    if parts[0] != "appliance" or len(parts) < 2:
        return "other"
    return parts[1]


class RecentErrors(logging.Handler):
    def __init__(self, keep: int = 50) -> None:
        super().__init__(level=logging.ERROR)
        self.recent: collections.deque[LoggedError] = collections.deque(maxlen=keep)
        self.by_stage: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = mask_text(record.getMessage())
        except Exception:  # noqa: BLE001 - a bad format string must not break logging
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        stage = stage_of(record.name)
        self.recent.appendleft(LoggedError(record.created or time.time(), stage, record.name,
                                           message[:500]))
        self.by_stage[stage] += 1

    def install(self) -> None:
        logging.getLogger().addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
