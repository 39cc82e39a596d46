"""Everything the business actions need, built once at start-up and handed to the tools.

    services = ActionServices.build(settings, db, notifier=messaging_outbox_adapter)
    await services.start()                     # the e-mail sender task (and Google sync)
    register_tools(registry, services)         # actions/tools.py
    ...
    await after_call(services, call_id)        # actions/summary.py, when a call ends
    # conversations gone quiet are summarised by services.quiet (actions/quiet.py)
    await services.close()
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from ..store.db import Database
from .appointments import Appointments
from .calendar import CalendarRules
from .mailer import EmailOutbox, RetryPolicy, SendFn, smtp_send
from .notify import Notifier, Outbound
from .quiet import QuietSweeper
from .settings import ActionSettings

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class ActionServices:
    settings: "Settings"
    config: ActionSettings
    db: Database
    rules: CalendarRules
    appointments: Appointments
    outbound: Outbound
    email: EmailOutbox
    clock: Clock = utc_now
    crm: Any = None            # crm.CrmClient when [crm] url_template is set
    google: Any = None         # gcal.GoogleCalendar when [google_calendar] is set
    quiet: QuietSweeper | None = None   # summaries of conversations gone quiet (actions/quiet.py)
    _started: bool = field(default=False, repr=False)

    @classmethod
    def build(cls, settings: "Settings", db: Database, notifier: Notifier | None = None, *,
              config: ActionSettings | None = None, clock: Clock = utc_now,
              mail_send: SendFn = smtp_send, mail_policy: RetryPolicy | None = None,
              ) -> "ActionServices":
        config = config or ActionSettings.of(settings)
        rules = CalendarRules.from_settings(config.appointments, settings.business.timezone)
        policy = mail_policy or RetryPolicy(max_attempts=settings.security.mail_attempts)
        email = EmailOutbox(db, settings.smtp, clock, policy, mail_send)
        outbound = Outbound(db, settings, config.notify, notifier, email, clock)
        google = None
        if config.google.enabled:
            from .gcal import GoogleCalendar

            google = GoogleCalendar(config.google, db, rules, clock)
        crm = None
        if config.crm.enabled:
            from .crm import CrmClient

            crm = CrmClient(config.crm)
        appointments = Appointments(
            db, rules, max_per_customer=config.appointments.max_per_customer,
            external_busy=google.busy if google is not None else None,
            external_timeout_s=config.google.timeout_ms / 1000, mirror=google is not None)
        return cls(settings=settings, config=config, db=db, rules=rules,
                   appointments=appointments, outbound=outbound, email=email, clock=clock,
                   crm=crm, google=google)

    def now(self) -> datetime:
        return self.clock()

    def start_tasks(self) -> None:
        """Start the e-mail sender (and the Google sync); needs the running event loop."""
        if self._started:
            return
        self._started = True
        self.email.start()
        self.quiet = self.quiet or QuietSweeper(self)
        self.quiet.start()
        if self.google is not None:
            self.google.start()

    async def start(self) -> None:
        self.start_tasks()

    async def close(self) -> None:
        await self.email.close()
        if self.quiet is not None:
            await self.quiet.close()
        if self.google is not None:
            await self.google.close()
        if self.crm is not None:
            await self.crm.close()
        self._started = False
