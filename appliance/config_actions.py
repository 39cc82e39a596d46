"""The readers of the actions' config.ini sections, one function per section, each key read
once through the one config reader (config_reader.Reader); appliance.config calls them.

    [appointments]  enabled, hours, slot_minutes, buffer_minutes, holidays, resource_count,
                    min_notice_minutes, max_days_ahead, max_per_customer, confirm
    [notify]        rate_limit, rate_window_minutes, summary_email, summary_whatsapp
    [crm]           url_template, timeout_ms                   (token: env CRM_TOKEN)
    [google_calendar] calendar_id, service_account_file, api_base_url, token_uri, timeout_ms
    [security]      see appliance/actions/security.py

Every section is optional (the dataclasses' defaults). Secrets (the CRM token) come from the
environment, never from config.ini, and are passed in.
"""

from __future__ import annotations

import re

from .actions.calendar import parse_holidays
from .actions.security import SecuritySettings
from .actions.settings import (
    ActionSettings,
    AppointmentSettings,
    CrmSettings,
    GoogleCalendarSettings,
    NotifySettings,
)
from .config_error import ConfigError
from .config_reader import Reader
from .hours import OpeningHours

_PREFIX = re.compile(r"^\+[1-9]\d{0,5}$")


def read_actions(r: Reader, crm_token: str = "") -> ActionSettings:
    """[appointments] [notify] [crm] [google_calendar]."""
    return ActionSettings(appointments=read_appointments(r), notify=read_notify(r),
                          crm=read_crm(r, crm_token), google=read_google_calendar(r))


def read_appointments(r: Reader) -> AppointmentSettings:
    s, d = "appointments", AppointmentSettings
    hours = r.str(s, "hours") or d.hours
    try:
        OpeningHours.parse(hours)
    except ValueError as exc:
        raise ConfigError(s, "hours", f"{exc}; write e.g. \"sun-thu 09:00-18:00; "
                                      "fri 09:00-13:00\"") from None
    try:
        holidays = parse_holidays(r.str(s, "holidays"))
    except ValueError as exc:
        raise ConfigError(s, "holidays", f"{exc}; write dates like 2025-04-13 or "
                                         "2025-04-20..2025-04-22") from None
    return AppointmentSettings(
        enabled=r.bool(s, "enabled", d.enabled),
        hours=hours,
        slot_minutes=r.int(s, "slot_minutes", d.slot_minutes, 5, 480),
        buffer_minutes=r.int(s, "buffer_minutes", d.buffer_minutes, 0, 240),
        holidays=holidays,
        resource_count=r.int(s, "resource_count", d.resource_count, 1, 50),
        min_notice_minutes=r.int(s, "min_notice_minutes", d.min_notice_minutes, 0, 7 * 24 * 60),
        max_days_ahead=r.int(s, "max_days_ahead", d.max_days_ahead, 1, 366),
        max_per_customer=r.int(s, "max_per_customer", d.max_per_customer, 1, 50),
        confirm=r.bool(s, "confirm", d.confirm))


def read_notify(r: Reader) -> NotifySettings:
    s, d = "notify", NotifySettings
    return NotifySettings(
        rate_limit=r.int(s, "rate_limit", d.rate_limit, 0, 100),
        rate_window_minutes=r.int(s, "rate_window_minutes", d.rate_window_minutes, 1, 24 * 60),
        summary_email=r.bool(s, "summary_email", d.summary_email),
        summary_whatsapp=r.bool(s, "summary_whatsapp", d.summary_whatsapp),
        conversation_quiet_s=r.int(s, "conversation_quiet_s", d.conversation_quiet_s, 1,
                                   7 * 86400))


def read_crm(r: Reader, token: str = "") -> CrmSettings:
    s = "crm"
    template = r.str(s, "url_template")
    if template and not template.startswith(("https://", "http://")):
        raise ConfigError(s, "url_template", f"{template!r} must be an http(s) URL")
    if template and "{phone}" not in template:
        raise ConfigError(s, "url_template", "must contain {phone}, where the E.164 number goes")
    return CrmSettings(url_template=template,
                       timeout_ms=r.int(s, "timeout_ms", CrmSettings.timeout_ms, 100, 5000),
                       token=token)


def read_google_calendar(r: Reader) -> GoogleCalendarSettings:
    s, d = "google_calendar", GoogleCalendarSettings
    calendar_id = r.str(s, "calendar_id")
    path = r.optional_path(s, "service_account_file")
    if path is not None and not path.is_file():
        raise ConfigError(s, "service_account_file", f"{path} does not exist")
    if bool(calendar_id) != bool(path):
        raise ConfigError(s, "calendar_id" if not calendar_id else "service_account_file",
                          "calendar_id and service_account_file go together")
    return GoogleCalendarSettings(
        calendar_id=calendar_id, service_account_file=path,
        api_base_url=r.str(s, "api_base_url").rstrip("/") or d.api_base_url,
        token_uri=r.str(s, "token_uri"),
        timeout_ms=r.int(s, "timeout_ms", d.timeout_ms, 200, 30000))


def read_security(r: Reader) -> SecuritySettings:
    s, d = "security", SecuritySettings
    prefixes = []
    for item in r.str(s, "allowed_prefixes").split(","):
        item = item.strip().replace(" ", "")
        if item and not _PREFIX.match(item):
            raise ConfigError(s, "allowed_prefixes", f"{item!r} is not a prefix like +972 or +1")
        if item:
            prefixes.append(item)
    return SecuritySettings(
        allowed_prefixes=tuple(prefixes),
        trust_attested_callers=r.bool(s, "trust_attested_callers", d.trust_attested_callers),
        code_minutes=r.int(s, "code_minutes", d.code_minutes, 1, 60),
        code_attempts=r.int(s, "code_attempts", d.code_attempts, 1, 10),
        owner_notices_per_hour=r.int(s, "owner_notices_per_hour", d.owner_notices_per_hour,
                                     1, 1000),
        inbound_per_hour=r.int(s, "inbound_per_hour", d.inbound_per_hour, 1, 10000),
        mail_attempts=r.int(s, "mail_attempts", d.mail_attempts, 1, 100),
        low_disk_mb=r.int(s, "low_disk_mb", d.low_disk_mb, 0, 1_000_000))
