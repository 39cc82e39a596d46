"""config.ini -> one frozen Settings; every bad value stops start-up naming section, key, fix."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from appliance.config import ConfigError, load_settings
from tests.support.fixtures import write_ini

REPO = Path(__file__).resolve().parent.parent


def test_shipped_config_loads_with_manifest_model_names(tmp_path: Path) -> None:
    ini = tmp_path / "config.ini"
    shutil.copy(REPO / "config.ini", ini)
    text = ini.read_text().replace("public_url =\n", "public_url = https://x.example.com\n", 1)
    ini.write_text(text)
    s = load_settings(ini, environ={})
    assert s.server.port == 1337
    assert s.server.public_url == "https://x.example.com"
    assert s.twilio.validate_signatures is True
    assert s.stt.model.manifest_name == "base"
    assert s.stt.model.path == tmp_path / "models" / "whisper-base"
    assert s.local_llm.model.manifest_name == "qwen2.5-0.5b-instruct"
    assert s.tts.voice_for("en").manifest_name == "en_US-joe-medium"
    assert s.stt.languages == ("en", "he", "ru")
    assert s.twilio.auth_token == ""                    # not set: refused at request time
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.server.port = 1  # type: ignore[misc]


def _error(tmp_path: Path, extra: str, environ=None) -> ConfigError:
    ini = write_ini(tmp_path / "config.ini", None, extra)
    with pytest.raises(ConfigError) as info:
        load_settings(ini, environ=environ or {})
    return info.value


@pytest.mark.parametrize("extra, section, key, words", [
    ("[telephone]\nx = 1\n", "telephone", None, "unknown section"),
    ("[server]\nprot = 1\n", "server", "prot", "unknown key"),
    ("[server]\nport = twelve\n", "server", "port", "not a whole number"),
    ("[server]\nport = 70000\n", "server", "port", "above the maximum"),
    ("[twilio]\nvalidate_signatures = perhaps\n", "twilio", "validate_signatures", "true/false"),
    ("[twilio]\noperator_number = 0501234567\n", "twilio", "operator_number", "E.164"),
    ("[twilio]\nauth_token = abc\n", "twilio", "auth_token", "secrets do not belong"),
    ("[business]\ntimezone = Mars/Olympus\n", "business", "timezone", "time zone"),
    ("[stt]\nmodel = /nonexistent/whisper\n", "stt", "model", "does not exist"),
    ("[tts]\nvoice = voices/nope.onnx\n", "tts", "voice", "does not exist"),
    ("[server]\npublic_url = receptionist.example.com\n", "server", "public_url", "https://"),
    ("[business]\ntransfer_hours = weekdays 9-5\n", "business", "transfer_hours",
     "cannot read"),
    ("[business]\ntransfer_hours = sun-thu 18:00-09:00\n", "business", "transfer_hours",
     "closes before it opens"),
    # the actions' sections go through the same reader (appliance/config_actions.py)
    ("[appointments]\ncolour = red\n", "appointments", "colour", "unknown key"),
    ("[appointments]\nhours = weekdays 9 to 5\n", "appointments", "hours", "sun-thu"),
    ("[notify]\nrate_limit = many\n", "notify", "rate_limit", "not a whole number"),
    ("[crm]\nurl_template = https://crm.example/p\n", "crm", "url_template", "{phone}"),
    ("[crm]\ntoken = abc\n", "crm", "token", "secrets do not belong"),
    ("[google_calendar]\ncalendar_id = x@group\n", "google_calendar", "service_account_file",
     "go together"),
    ("[security]\nallowed_prefixes = 972\n", "security", "allowed_prefixes", "like +972"),
    ("[security]\ncode_minutes = 0\n", "security", "code_minutes", "below the minimum"),
    ("[security]\nlow_disk = 5\n", "security", "low_disk", "unknown key"),
])
def test_bad_values_name_section_key_and_fix(tmp_path, extra, section, key, words) -> None:
    err = _error(tmp_path, extra)
    assert (err.section, err.key) == (section, key)
    assert words in str(err)


def test_the_actions_sections_are_read_with_the_rest(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "config.ini", None,
                    "[appointments]\nslot_minutes = 45\nconfirm = no\nhours =\n"
                    "[notify]\nrate_limit =\n[crm]\nurl_template = https://crm.example/?p={phone}\n"
                    "[security]\nallowed_prefixes = +972, +1\ncode_attempts = 5\n")
    s = load_settings(ini, environ={"CRM_TOKEN": "crm-secret"})
    assert (s.actions.appointments.slot_minutes, s.actions.appointments.confirm) == (45, False)
    assert s.actions.appointments.hours == "mon-fri 09:00-17:00"    # empty: the default
    assert s.actions.notify.rate_limit == 3                          # empty: the default
    assert s.actions.crm.enabled and s.actions.crm.token == "crm-secret"
    assert s.security.allowed_prefixes == ("+972", "+1")
    assert s.security.code_attempts == 5 and s.security.code_minutes == 10


def test_missing_public_url_with_validation_on_stops(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "config.ini", None)
    ini.write_text(ini.read_text().replace("public_url = https://receptionist.example.com\n", ""))
    with pytest.raises(ConfigError) as info:
        load_settings(ini, environ={"TWILIO_AUTH_TOKEN": "t"})
    assert (info.value.section, info.value.key) == ("server", "public_url")
    assert "Cloudflare" in str(info.value)
    ini.write_text(ini.read_text().replace("[twilio]\n", "[twilio]\nvalidate_signatures = false\n"))
    assert load_settings(ini, environ={}).server.public_url == ""


def test_secrets_from_file_and_environment(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("# comment\nTWILIO_AUTH_TOKEN=from-file\nexport GEMINI_API_KEY='g-key'\n")
    ini = write_ini(tmp_path / "config.ini", None, f"[server]\nsecrets_file = {secrets}\n")
    s = load_settings(ini, environ={})
    assert s.twilio.auth_token == "from-file" and s.gemini.api_key == "g-key"
    s = load_settings(ini, environ={"TWILIO_AUTH_TOKEN": "from-env"})
    assert s.twilio.auth_token == "from-env"
    assert "from-env" not in repr(s)                  # secrets never printed


def test_transfer_numbers_always_include_the_operator(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "config.ini", None,
                    "[twilio]\noperator_number = +15550009999\ntransfer_numbers = +15550001234\n")
    s = load_settings(ini, environ={})
    assert s.twilio.transfer_numbers == ("+15550009999", "+15550001234")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "missing.ini", environ={})
    bad = tmp_path / "bad.ini"
    bad.write_text("this is not ini\n")
    with pytest.raises(ConfigError):
        load_settings(bad, environ={})


def test_one_strict_reader_for_opening_hours() -> None:
    """Config, calendar and transfers share appliance/hours.py: a bad spec is an error, never
    "open" (the transfer check once allowed transfers on input it could not read)."""
    from datetime import datetime

    from appliance.actions.calendar import OpeningHours as CalendarHours
    from appliance.hours import OpeningHours, within_hours

    assert CalendarHours is OpeningHours
    with pytest.raises(ValueError, match="cannot read"):
        within_hours("weekdays 9-5", datetime(2024, 5, 5, 10, 0))
    assert within_hours("sun 09:00-10:00, mon 09:00-10:00", datetime(2024, 5, 6, 9, 30))
