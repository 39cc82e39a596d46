"""Where the installed service keeps things, and the service's config.ini derived from the
repository's (comments kept; only the paths that must point into /var/lib/appliance change).

    python -m appliance.ops.layout SRC_INI DEST_INI STATE_DIR      (used by install.sh --service)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Where systemd's LoadCredential= puts /etc/appliance/secrets.env for the service
# ($CREDENTIALS_DIRECTORY); the original stays root-only.
SECRETS_FILE = "/run/credentials/appliance.service/secrets.env"
_SECTION = re.compile(r"^\[(\w+)\]")
_KEY = re.compile(r"^(\w+)\s*=")


def service_paths(state: str) -> dict[str, dict[str, str]]:
    return {"storage": {"database": f"{state}/appliance.db"},
            "models": {"directory": f"{state}/models"},
            "kb": {"directory": f"{state}/kb"},
            "server": {"secrets_file": SECRETS_FILE}}


def service_ini(text: str, state: str) -> str:
    wanted = service_paths(state)
    out, section = [], ""
    for line in text.splitlines(keepends=True):
        header = _SECTION.match(line)
        section = header.group(1) if header else section
        key = _KEY.match(line)
        if key and key.group(1) in wanted.get(section, {}):
            line = f"{key.group(1)} = {wanted[section][key.group(1)]}\n"
        out.append(line)
    return "".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dest, state = Path(argv[0]), Path(argv[1]), argv[2]
    dest.write_text(service_ini(src.read_text(encoding="utf-8"), state), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
