"""The [security] section of config.ini: limits that keep the box from being used against the
business or its customers. Every key has a safe default, so the section is optional
(read by appliance/config_actions.py).

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

from dataclasses import dataclass


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

    def may_message(self, number: str) -> bool:
        """May an outbound WhatsApp/SMS go to this E.164 number?"""
        return not self.allowed_prefixes or number.startswith(self.allowed_prefixes)
