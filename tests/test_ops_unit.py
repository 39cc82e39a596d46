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
