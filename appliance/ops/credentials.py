"""Secrets handed over by systemd (LoadCredential=): $CREDENTIALS_DIRECTORY holds private,
read-only copies only this service can read. `secrets.env` there (KEY=VALUE lines, like the
secrets file) and/or one file per secret named after it (TWILIO_AUTH_TOKEN, ...)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

SECRET_NAMES = ("TWILIO_AUTH_TOKEN", "GEMINI_API_KEY", "SMTP_PASSWORD", "CRM_TOKEN")


def credentials(environ: Mapping[str, str],
                read_env_file: Callable[[Path], dict[str, str]]) -> dict[str, str]:
    directory = environ.get("CREDENTIALS_DIRECTORY", "")
    if not directory:
        return {}
    root = Path(directory)
    values = read_env_file(root / "secrets.env")
    for name in SECRET_NAMES:
        path = root / name
        if path.is_file():
            values[name] = path.read_text(encoding="utf-8").strip()
    return values
