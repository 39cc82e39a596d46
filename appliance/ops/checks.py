"""What `appliance doctor` reports about running the box: model licences, the tunnel, backups.

Each function returns (level, what, fix) triples; doctor.py turns them into its findings.
"""

from __future__ import annotations

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


def all_checks(settings: Settings) -> list[Check]:
    return check_licences(settings) + check_backups(settings) + check_tunnel(settings)
