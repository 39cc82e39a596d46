"""The [security] section of config.ini: limits that keep the box from being used against the
business or its customers. Every key has a safe default, so the section is optional.

    [security]
    allowed_prefixes        = +972, +1   ; outbound WhatsApp/SMS only to these country prefixes
                                           (empty: any number)
    trust_attested_callers  = false      ; a STIR/SHAKEN A-attested caller skips the one-time code
    code_minutes            = 10         ; how long a one-time code is valid
    code_attempts           = 3          ; wrong codes before it is void
    owner_notices_per_hour  = 20         ; message notices to the owner, all customers together
    inbound_per_hour        = 30         ; messages one sender can have answered per hour
    mail_attempts           = 8          ; tries per e-mail before it is given up
    low_disk_mb             = 200        ; /healthz and doctor say "low disk" below this
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from .settings import _bool, _fail, _int, _unknown

_PREFIX = re.compile(r"^\+[1-9]\d{0,5}$")


@dataclass(frozen=True)
class SecuritySettings:
    allowed_prefixes: tuple[str, ...] = ()
    trust_attested_callers: bool = False
    code_minutes: int = 10
    code_attempts: int = 3
    owner_notices_per_hour: int = 20
    inbound_per_hour: int = 30
    mail_attempts: int = 8
    low_disk_mb: int = 200

    KEYS: ClassVar[frozenset[str]] = frozenset({
        "allowed_prefixes", "trust_attested_callers", "code_minutes", "code_attempts",
        "owner_notices_per_hour", "inbound_per_hour", "mail_attempts", "low_disk_mb"})

    @classmethod
    def from_section(cls, values: Mapping[str, str]) -> SecuritySettings:
        s = "security"
        _unknown(values, s, cls.KEYS)
        prefixes = []
        for item in str(values.get("allowed_prefixes", "")).split(","):
            item = item.strip().replace(" ", "")
            if item:
                if not _PREFIX.match(item):
                    _fail(s, "allowed_prefixes", f"{item!r} is not a prefix like +972 or +1")
                prefixes.append(item)
        return cls(
            allowed_prefixes=tuple(prefixes),
            trust_attested_callers=_bool(values, s, "trust_attested_callers", False),
            code_minutes=_int(values, s, "code_minutes", 10, 1, 60),
            code_attempts=_int(values, s, "code_attempts", 3, 1, 10),
            owner_notices_per_hour=_int(values, s, "owner_notices_per_hour", 20, 1, 1000),
            inbound_per_hour=_int(values, s, "inbound_per_hour", 30, 1, 10000),
            mail_attempts=_int(values, s, "mail_attempts", 8, 1, 100),
            low_disk_mb=_int(values, s, "low_disk_mb", 200, 0, 1_000_000))

    def may_message(self, number: str) -> bool:
        """May an outbound WhatsApp/SMS go to this E.164 number?"""
        return not self.allowed_prefixes or number.startswith(self.allowed_prefixes)
