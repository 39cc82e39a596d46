"""The settings of the business actions, read from config.ini sections the lead adds to config.py.

Each dataclass has defaults (so the appliance works without the sections) and a
`from_parser(section)` classmethod taking the section's raw key -> value strings (what
`dict(parser[section])` gives, missing keys allowed) and raising appliance.config.ConfigError
naming the section and key. Secrets (the CRM token) come from the environment, never from
config.ini, and are passed in separately.

    [appointments]  enabled, hours, slot_minutes, buffer_minutes, holidays, resource_count,
                    min_notice_minutes, max_days_ahead, max_per_customer, confirm
    [notify]        rate_limit, rate_window_minutes, summary_email, summary_whatsapp,
                    conversation_quiet_s
    [crm]           url_template, timeout_ms                   (token: env CRM_TOKEN)
    [google_calendar] calendar_id, service_account_file, api_base_url, token_uri
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import ClassVar, Mapping, NoReturn

from ..config_error import ConfigError
from .calendar import OpeningHours, parse_holidays

Section = Mapping[str, str]


def _fail(section: str, key: str, reason: str) -> NoReturn:
    raise ConfigError(section, key, reason)


def _int(values: Section, section: str, key: str, default: int, lo: int, hi: int) -> int:
    text = str(values.get(key, default)).strip() or str(default)
    try:
        value = int(text)
    except ValueError:
        _fail(section, key, f"{text!r} is not a whole number")
    if not lo <= value <= hi:
        _fail(section, key, f"{value} must be between {lo} and {hi}")
    return value


def _bool(values: Section, section: str, key: str, default: bool) -> bool:
    text = str(values.get(key, "")).strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    _fail(section, key, f"{text!r} is not true/false")


def _unknown(values: Section, section: str, known: frozenset[str]) -> None:
    for key in values:
        if key not in known:
            _fail(section, key, f"unknown key; known keys: {', '.join(sorted(known))}")


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

    SECTION: ClassVar[str] = "appointments"
    KEYS: ClassVar[frozenset[str]] = frozenset({
        "enabled", "hours", "slot_minutes", "buffer_minutes", "holidays", "resource_count",
        "min_notice_minutes", "max_days_ahead", "max_per_customer", "confirm"})

    @property
    def opening_hours(self) -> OpeningHours:
        return OpeningHours.parse(self.hours)

    @classmethod
    def from_parser(cls, values: Section) -> "AppointmentSettings":
        s = cls.SECTION
        _unknown(values, s, cls.KEYS)
        hours = str(values.get("hours", cls.hours)).strip() or cls.hours
        try:
            OpeningHours.parse(hours)
        except ValueError as exc:
            _fail(s, "hours", f"{exc}; write e.g. \"sun-thu 09:00-18:00; fri 09:00-13:00\"")
        try:
            holidays = parse_holidays(str(values.get("holidays", "")))
        except ValueError as exc:
            _fail(s, "holidays", f"{exc}; write dates like 2025-04-13 or 2025-04-20..2025-04-22")
        return cls(
            enabled=_bool(values, s, "enabled", True),
            hours=hours,
            slot_minutes=_int(values, s, "slot_minutes", 30, 5, 480),
            buffer_minutes=_int(values, s, "buffer_minutes", 0, 0, 240),
            holidays=holidays,
            resource_count=_int(values, s, "resource_count", 1, 1, 50),
            min_notice_minutes=_int(values, s, "min_notice_minutes", 60, 0, 7 * 24 * 60),
            max_days_ahead=_int(values, s, "max_days_ahead", 60, 1, 366),
            max_per_customer=_int(values, s, "max_per_customer", 3, 1, 50),
            confirm=_bool(values, s, "confirm", True),
        )


@dataclass(frozen=True)
class NotifySettings:
    """[notify]: how much a customer may cause to be sent, and where summaries go."""

    rate_limit: int = 3                 # messages caused by one customer per window
    rate_window_minutes: int = 10
    summary_email: bool = True          # to [owner] email, when set and [smtp] host is set
    summary_whatsapp: bool = True       # to [owner] whatsapp, when set
    conversation_quiet_s: int = 1800    # a WhatsApp/SMS conversation quiet this long is summarised

    SECTION: ClassVar[str] = "notify"
    KEYS: ClassVar[frozenset[str]] = frozenset({"rate_limit", "rate_window_minutes",
                                                "summary_email", "summary_whatsapp",
                                                "conversation_quiet_s"})

    @classmethod
    def from_parser(cls, values: Section) -> "NotifySettings":
        s = cls.SECTION
        _unknown(values, s, cls.KEYS)
        return cls(rate_limit=_int(values, s, "rate_limit", 3, 0, 100),
                   rate_window_minutes=_int(values, s, "rate_window_minutes", 10, 1, 24 * 60),
                   summary_email=_bool(values, s, "summary_email", True),
                   summary_whatsapp=_bool(values, s, "summary_whatsapp", True),
                   conversation_quiet_s=_int(values, s, "conversation_quiet_s", 1800, 1,
                                             7 * 86400))


@dataclass(frozen=True)
class CrmSettings:
    """[crm]: an optional HTTP lookup of the caller; the local record is the fallback."""

    url_template: str = ""              # e.g. https://crm.example/api/people?phone={phone}
    timeout_ms: int = 800
    token: str = field(default="", repr=False)   # env CRM_TOKEN, sent as "Bearer <token>"

    SECTION: ClassVar[str] = "crm"
    KEYS: ClassVar[frozenset[str]] = frozenset({"url_template", "timeout_ms"})

    @property
    def enabled(self) -> bool:
        return bool(self.url_template)

    @classmethod
    def from_parser(cls, values: Section, token: str = "") -> "CrmSettings":
        s = cls.SECTION
        _unknown(values, s, cls.KEYS)
        template = str(values.get("url_template", "")).strip()
        if template:
            if not template.startswith(("https://", "http://")):
                _fail(s, "url_template", f"{template!r} must be an http(s) URL")
            if "{phone}" not in template:
                _fail(s, "url_template", "must contain {phone}, where the E.164 number goes")
        return cls(url_template=template,
                   timeout_ms=_int(values, s, "timeout_ms", 800, 100, 5000), token=token)


@dataclass(frozen=True)
class GoogleCalendarSettings:
    """[google_calendar]: mirror appointments into a Google Calendar with a service account."""

    calendar_id: str = ""               # e.g. abc123@group.calendar.google.com
    service_account_file: Path | None = None   # the JSON key; share the calendar with it
    api_base_url: str = "https://www.googleapis.com/calendar/v3"
    token_uri: str = ""                 # "" = the one in the key file (tests: a fake)
    timeout_ms: int = 3000

    SECTION: ClassVar[str] = "google_calendar"
    KEYS: ClassVar[frozenset[str]] = frozenset({"calendar_id", "service_account_file",
                                                "api_base_url", "token_uri", "timeout_ms"})

    @property
    def enabled(self) -> bool:
        return bool(self.calendar_id and self.service_account_file)

    @classmethod
    def from_parser(cls, values: Section, root: Path | None = None) -> "GoogleCalendarSettings":
        s = cls.SECTION
        _unknown(values, s, cls.KEYS)
        calendar_id = str(values.get("calendar_id", "")).strip()
        raw = str(values.get("service_account_file", "")).strip()
        path: Path | None = None
        if raw:
            path = Path(os.path.expanduser(raw))
            if not path.is_absolute() and root is not None:
                path = root / path
            if not path.is_file():
                _fail(s, "service_account_file", f"{path} does not exist")
        if bool(calendar_id) != bool(path):
            _fail(s, "calendar_id" if not calendar_id else "service_account_file",
                  "calendar_id and service_account_file go together")
        return cls(calendar_id=calendar_id, service_account_file=path,
                   api_base_url=(str(values.get("api_base_url", "")).strip().rstrip("/")
                                 or cls.api_base_url),
                   token_uri=str(values.get("token_uri", "")).strip(),
                   timeout_ms=_int(values, s, "timeout_ms", 3000, 200, 30000))


@dataclass(frozen=True)
class ActionSettings:
    appointments: AppointmentSettings = AppointmentSettings()
    notify: NotifySettings = NotifySettings()
    crm: CrmSettings = CrmSettings()
    google: GoogleCalendarSettings = GoogleCalendarSettings()

    @classmethod
    def from_sections(cls, sections: Mapping[str, Section], environ: Mapping[str, str] = {},
                      root: Path | None = None) -> "ActionSettings":
        """All four from a parser's sections (absent sections take the defaults)."""
        get = lambda name: sections.get(name, {})  # noqa: E731
        return cls(appointments=AppointmentSettings.from_parser(get("appointments")),
                   notify=NotifySettings.from_parser(get("notify")),
                   crm=CrmSettings.from_parser(get("crm"), token=environ.get("CRM_TOKEN", "")),
                   google=GoogleCalendarSettings.from_parser(get("google_calendar"), root))

    @classmethod
    def of(cls, settings: object) -> "ActionSettings":
        """`settings.actions` once config.py carries it, else the defaults."""
        found = getattr(settings, "actions", None)
        return found if isinstance(found, ActionSettings) else cls()
