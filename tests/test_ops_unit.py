"""The shipped unit: hardened (systemd-analyze's exposure <= 2.0), notify-type, watchdog,
credentials, and the service's config derived from the repository's."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.ops.layout import SECRETS_FILE, service_ini

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "appliance.service"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_exposure_score_is_at_most_2() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd)")
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                          capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for appliance\.service: ([\d.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0, done.stdout


def test_the_unit_runs_unprivileged_notify_type_with_credentials() -> None:
    d = directives()
    assert d["Type"] == ["notify"] and d["Restart"] == ["on-failure"]
    assert int(d["WatchdogSec"][0]) >= 10
    assert d["User"] == ["appliance"] and d["UMask"] == ["0077"]
    assert d["CapabilityBoundingSet"] == [""] and d["NoNewPrivileges"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"] and d["ReadWritePaths"] == ["/var/lib/appliance"]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert d["LoadCredential"] == ["secrets.env:/etc/appliance/secrets.env"]
    assert "MemoryMax" in d and "@system-service" in d["SystemCallFilter"]
    # stop: 45 s for live calls + 10 s to flush must fit in TimeoutStopSec
    assert int(d["TimeoutStopSec"][0]) > 55


def test_the_service_config_points_into_var_lib_and_keeps_the_comments() -> None:
    text = service_ini((REPO / "config.ini").read_text(), "/var/lib/appliance")
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read_string(text)
    assert parser["storage"]["database"] == "/var/lib/appliance/appliance.db"
    assert parser["models"]["directory"] == "/var/lib/appliance/models"
    assert parser["server"]["secrets_file"] == SECRETS_FILE
    assert text.count("\n#") == (REPO / "config.ini").read_text().count("\n#")


def test_install_script_parses() -> None:
    subprocess.run(["bash", "-n", str(REPO / "install.sh")], check=True)


def test_the_shipped_stop_limits_fit_the_units_stop_timeout(make_settings) -> None:
    """[service] drain_s + flush_s of the shipped config.ini against the shipped TimeoutStopSec
    (what `systemctl show` would say), and a config that outgrows it gets doctor's warning."""
    from appliance.ops.checks import check_stop_limits, timespan_s

    timeout = directives()["TimeoutStopSec"][0]
    shipped = configparser.ConfigParser(interpolation=None)
    shipped.read(REPO / "config.ini")
    service = shipped["service"]
    assert float(service["drain_s"]) + float(service["flush_s"]) + 10 <= timespan_s(timeout + "s")
    assert timespan_s("1min 15s") == 75 and timespan_s("500ms") == 0.5
    assert timespan_s("infinity") is None
    ok = check_stop_limits(make_settings(), lambda: "1min 15s")
    assert ok[0][0] == "ok"
    slow = check_stop_limits(make_settings(extra="[service]\ndrain_s = 120\n"), lambda: "1min 15s")
    assert slow[0][0] == "warn" and "TimeoutStopSec" in slow[0][2]
    assert check_stop_limits(make_settings(), lambda: "") == []      # no systemd: nothing to say
