"""The settings of the business actions: frozen dataclasses whose defaults are the defaults of
their config.ini sections (so the appliance works without them). appliance/config_actions.py
reads the sections into them through the one config reader. Secrets (the CRM token) come from
the environment, never from config.ini.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ..hours import OpeningHours


@dataclass(frozen=True)
class AppointmentSettings:
    """[appointments]: the calendar the bot books into (times in [business] timezone)."""

    enabled: bool = True
    hours: str = "mon-fri 09:00-17:00"     # like transfer_hours; a day may repeat (lunch break)
    slot_minutes: int = 30
    buffer_minutes: int = 0                 # free time after each appointment
    holidays: tuple[date, ...] = ()         # closed days; "2025-04-13, 2025-04-20..2025-04-22"
    resource_count: int = 1                 # appointments that can run at the same time
    min_notice_minutes: int = 60            # no booking that starts sooner than this
    max_days_ahead: int = 60                # no booking further ahead than this
    max_per_customer: int = 3               # upcoming appointments one customer may hold
    confirm: bool = True                    # WhatsApp/SMS confirmation to the customer

    @property
    def opening_hours(self) -> OpeningHours:
        return OpeningHours.parse(self.hours)


@dataclass(frozen=True)
class NotifySettings:
    """[notify]: how much a customer may cause to be sent, and where summaries go."""

    rate_limit: int = 3                 # messages caused by one customer per window
    rate_window_minutes: int = 10
    summary_email: bool = True          # to [owner] email, when set and [smtp] host is set
    summary_whatsapp: bool = True       # to [owner] whatsapp, when set
    conversation_quiet_s: int = 1800    # a WhatsApp/SMS conversation quiet this long is summarised


@dataclass(frozen=True)
class CrmSettings:
    """[crm]: an optional HTTP lookup of the caller; the local record is the fallback."""

    url_template: str = ""              # e.g. https://crm.example/api/people?phone={phone}
    timeout_ms: int = 800
    token: str = field(default="", repr=False)   # env CRM_TOKEN, sent as "Bearer <token>"

    @property
    def enabled(self) -> bool:
        return bool(self.url_template)


@dataclass(frozen=True)
class GoogleCalendarSettings:
    """[google_calendar]: mirror appointments into a Google Calendar with a service account."""

    calendar_id: str = ""               # e.g. abc123@group.calendar.google.com
    service_account_file: Path | None = None   # the JSON key; share the calendar with it
    api_base_url: str = "https://www.googleapis.com/calendar/v3"
    token_uri: str = ""                 # "" = the one in the key file (tests: a fake)
    timeout_ms: int = 3000

    @property
    def enabled(self) -> bool:
        return bool(self.calendar_id and self.service_account_file)


@dataclass(frozen=True)
class ActionSettings:
    appointments: AppointmentSettings = AppointmentSettings()
    notify: NotifySettings = NotifySettings()
    crm: CrmSettings = CrmSettings()
    google: GoogleCalendarSettings = GoogleCalendarSettings()

    @classmethod
    def of(cls, settings: object) -> "ActionSettings":
        """`settings.actions` once config.py carries it, else the defaults."""
        found = getattr(settings, "actions", None)
        return found if isinstance(found, ActionSettings) else cls()
