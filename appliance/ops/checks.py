"""What `appliance doctor` reports about running the box: model licences, the tunnel, backups.

Each function returns (level, what, fix) triples; doctor.py turns them into its findings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from .. import models_manifest as mm
from ..config import Settings
from ..store import backup as backups
from .tunnel import probe_public_url

Check = tuple[str, str, str]


def check_licences(settings: Settings) -> list[Check]:
    """One line per model this configuration uses: its licence, and a warning if a business
    may not use it."""
    out: list[Check] = []
    for ref in settings.model_refs():
        entry = mm.find(ref.manifest_name) if ref.manifest_name else None
        if entry is None:
            out.append(("warn", f"{ref.setting}: {ref.path.name} is not in the manifest, its "
                                "licence is unknown", "check the model's licence yourself"))
        elif not entry.commercial_use:
            out.append(("warn", f"{ref.setting}: {entry.name} licence: {entry.license}",
                        "a business may not use it; choose another model"))
        else:
            out.append(("ok", f"{ref.setting}: {entry.name} licence: {entry.license}", ""))
    out.append(("ok", "the appliance is GPL-3.0-or-later (piper-tts runs in-process); LICENSE",
                ""))
    return out


def check_tunnel(settings: Settings) -> list[Check]:
    """Only meaningful while the server runs; a failure is a warning (the probe needs it)."""
    if not settings.server.public_url or not settings.twilio.auth_token:
        return []
    result = probe_public_url(settings)
    if result.ok:
        return [("ok", result.detail, "")]
    return [("warn", f"tunnel: {result.detail}",
             "is the server running? is cloudflared running (`appliance tunnel` writes its "
             "config)? is [server] public_url the tunnel's host name?")]


def check_backups(settings: Settings) -> list[Check]:
    directory = backups.default_directory(Path(settings.storage.database))
    found = backups.list_backups(directory)
    if not found:
        return [("warn", f"no database backup in {directory} yet",
                 "run `appliance backup` (the service makes one every night)")]
    return [("ok", f"{len(found)} backup(s) in {directory}, newest {found[-1].name}", "")]


_SPAN = re.compile(r"(\d+(?:\.\d+)?)(us|ms|min|s|h|d)")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def timespan_s(text: str) -> float | None:
    """systemd's "1min 15s" / "90s" / "500ms" in seconds; None for infinity or garbage."""
    spans = _SPAN.findall(text.replace(" ", ""))
    if not spans or text.strip() == "infinity":
        return None
    return sum(float(n) * _UNIT_S[unit] for n, unit in spans)


def unit_stop_timeout(unit: str = "appliance.service") -> str:
    if not shutil.which("systemctl") or not Path("/run/systemd/system").is_dir():
        return ""
    done = subprocess.run(["systemctl", "show", unit, "-p", "LoadState,TimeoutStopUSec"],
                          capture_output=True, text=True, timeout=10, check=False)
    props = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return props.get("TimeoutStopUSec", "") if props.get("LoadState") == "loaded" else ""


def check_stop_limits(settings: Settings,
                      stop_timeout: Callable[[], str] = unit_stop_timeout) -> list[Check]:
    """[service] drain_s + flush_s must fit in the unit's TimeoutStopSec, or systemd kills the
    process mid-drain (calls cut, replies left for the next start)."""
    limit = timespan_s(stop_timeout())
    if limit is None:
        return []
    need = settings.service.drain_s + settings.service.flush_s + 10.0
    if need > limit:
        return [("warn", f"[service] drain_s + flush_s (+10 s to close) = {need:.0f} s, but "
                         f"systemd kills the service {limit:.0f} s after a stop",
                 "lower them, or raise TimeoutStopSec: sudo systemctl edit appliance")]
    return [("ok", f"graceful stop: {need:.0f} s of {limit:.0f} s TimeoutStopSec", "")]


def all_checks(settings: Settings) -> list[Check]:
    return (check_licences(settings) + check_backups(settings) + check_stop_limits(settings)
            + check_tunnel(settings))
