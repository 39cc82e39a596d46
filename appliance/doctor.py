"""`appliance doctor`: what works, what does not, and how to fix it, in plain words.

It never needs a valid configuration to run: a broken config.ini is one of the things it
explains. Exit code 0 when the appliance can take calls, 1 otherwise.
"""

from __future__ import annotations

import socket
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from . import models_manifest as mm
from .config import ConfigError, Settings, load_settings


@dataclass(frozen=True)
class Finding:
    level: str      # "ok", "warn", "fail"
    what: str
    fix: str = ""


def check_python() -> list[Finding]:
    out = []
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 11):
        out.append(Finding("fail", f"Python {version} is too old", "use Python 3.11 or newer "
                                                                    "(./install.sh picks one)"))
    else:
        out.append(Finding("ok", f"Python {version} ({sys.executable})"))
    conn = sqlite3.connect(":memory:")
    if not hasattr(conn, "enable_load_extension"):
        out.append(Finding("fail", "this Python's sqlite3 cannot load extensions",
                           "re-run ./install.sh; it picks a Python that can (Debian's "
                           "/usr/bin/python3), or build one with "
                           "--enable-loadable-sqlite-extensions"))
        return out
    try:
        import sqlite_vec

        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        (vec_version,) = conn.execute("select vec_version()").fetchone()
        out.append(Finding("ok", f"SQLite {sqlite3.sqlite_version} with sqlite-vec {vec_version}"))
    except (ImportError, sqlite3.Error) as exc:
        out.append(Finding("fail", f"sqlite-vec does not load: {exc}", "re-run ./install.sh"))
    return out


def check_models(settings: Settings) -> list[Finding]:
    out = []
    entries = mm.load_manifest()
    for ref in settings.model_refs():
        if ref.setting.startswith("[tts] voice_"):
            continue            # a language's own voice: check_voices (a warning, not fatal)
        entry = mm.find(ref.manifest_name) if ref.manifest_name else None
        if not ref.present:
            fix = (f"run `appliance models download {ref.manifest_name}`" if entry
                   else f"correct {ref.setting}")
            needed = f" (needed for: {entry.needed_for})" if entry else ""
            out.append(Finding("fail", f"{ref.setting}: {ref.path} is missing{needed}", fix))
            continue
        if entry is not None:
            problem = mm.status(entry, settings.models_dir)
            if problem:
                out.append(Finding("fail", f"{ref.setting}: {problem}",
                                   f"run `appliance models download {entry.name}`"))
                continue
        out.append(Finding("ok", f"{ref.setting}: {ref.path}"))
    del entries
    return out


def check_voices(settings: Settings) -> list[Finding]:
    """One line per configured language: which voice speaks it; a warning for every language
    without its own voice, or whose voice a business may not use."""
    from .voices import voice_report

    return [Finding(level, what, fix) for level, what, fix in voice_report(settings)]


def check_twilio(settings: Settings) -> list[Finding]:
    t, out = settings.twilio, []
    if not settings.server.public_url:
        out.append(Finding("warn", "[server] public_url is empty",
                           "set it to your Cloudflare Tunnel https URL; Twilio's webhooks go "
                           "to <public_url>/voice and <public_url>/message"))
    elif urlparse(settings.server.public_url).scheme != "https":
        out.append(Finding("warn", "[server] public_url is not https",
                           "Twilio Media Streams need wss://, i.e. an https public URL"))
    else:
        out.append(Finding("ok", f"public URL {settings.server.public_url}: set Twilio's voice "
                                 f"webhook to {settings.server.public_url}/voice and messaging "
                                 f"to {settings.server.public_url}/message"))
    if t.validate_signatures and not t.auth_token:
        out.append(Finding("fail", "TWILIO_AUTH_TOKEN is not set: every Twilio webhook will be "
                                   "refused", "put TWILIO_AUTH_TOKEN=... in the secrets file "
                                              "or the environment"))
    elif not t.validate_signatures:
        out.append(Finding("warn", "[twilio] validate_signatures is off: anyone can drive the bot",
                           "set it to true in production"))
    else:
        out.append(Finding("ok", "Twilio signatures are checked"))
    if not t.account_sid:
        out.append(Finding("warn", "[twilio] account_sid is empty: replies sent later (WhatsApp, "
                                   "SMS, summaries) cannot be sent", "copy it from the console"))
    if not t.operator_number:
        out.append(Finding("warn", "[twilio] operator_number is empty: calls cannot be "
                                   "transferred to a person; the bot takes messages instead"))
    return out


def check_gemini(settings: Settings, timeout_s: float = 3.0) -> list[Finding]:
    g = settings.gemini
    if not g.api_key:
        return [Finding("warn", "GEMINI_API_KEY is not set: the bot runs offline on the local "
                                "model only", "add GEMINI_API_KEY to the secrets file")]
    url = urlparse(g.base_url or "https://generativelanguage.googleapis.com")
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        return [Finding("warn", f"Gemini ({host}) is not reachable now: {exc}",
                        "the local model answers until it is; check the network or base_url")]
    return [Finding("ok", f"Gemini {g.model} configured, {host} reachable")]


def check_database(settings: Settings) -> list[Finding]:
    from .store.db import Database, StoreError

    try:
        db = Database.open_sync(settings.storage.database)
    except (StoreError, sqlite3.Error, OSError) as exc:
        return [Finding("fail", f"database {settings.storage.database}: {exc}",
                        "check [storage] database and the folder's permissions")]
    db.close()
    return [Finding("ok", f"database {settings.storage.database}"), check_disk(settings)]


def check_disk(settings: Settings) -> Finding:
    from .store.disk import disk_status

    status = disk_status(settings.storage.database, settings.security.low_disk_mb)
    if status.low:
        return Finding("warn", f"{status.message} on {status.path}",
                       "free space there: when the disk is full, nothing can be stored")
    return Finding("ok", f"disk: {status.message} on {status.path}")


def run_doctor(config_path: Path, out=None) -> int:
    out = out or sys.stdout
    findings = check_python()
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        findings.append(Finding("fail", str(exc), "edit the config file (see the comments in it)"))
        settings = None
    if settings is not None:
        findings.append(Finding("ok", f"configuration {settings.path}"))
        findings += check_database(settings)
        findings += check_models(settings)
        findings += check_voices(settings)
        findings += check_twilio(settings)
        findings += check_gemini(settings)
        from .ops.checks import all_checks    # licences, backups, the tunnel probe

        findings += [Finding(*check) for check in all_checks(settings)]
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    for f in findings:
        print(f"{marks[f.level]} {f.what}", file=out)
        if f.fix and f.level != "ok":
            print(f"     fix: {f.fix}", file=out)
    failed = [f for f in findings if f.level == "fail"]
    print(f"\n{'Ready to take calls.' if not failed else f'{len(failed)} problem(s) to fix.'}",
          file=out)
    return 1 if failed else 0
