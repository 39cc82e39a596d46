"""What every dashboard handler gets: the runtime and the dashboard's own services, typed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aiohttp import web

from ..store.db import Database
from .sessions import Session, Sessions

if TYPE_CHECKING:
    from ..compose import Services
    from .cfaccess import AccessVerifier
    from .errors import RecentErrors
    from .kbjobs import KbJobs
    from .live import LiveCalls


@dataclass
class AdminContext:
    services: Services
    db: Database
    sessions: Sessions
    live: LiveCalls
    kb_jobs: KbJobs
    errors: RecentErrors
    access: AccessVerifier | None
    clock: Callable[[], float]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.services.settings.business.timezone)


CTX = web.AppKey("admin_context", AdminContext)
SESSION = web.RequestKey("admin_session", Session)     # the Session of the request


def ctx_of(request: web.Request) -> AdminContext:
    return request.app[CTX]


def session_of(request: web.Request) -> Session:
    return request[SESSION]
