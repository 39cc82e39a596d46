"""The one error every config reader raises (appliance.config and appliance.actions.settings)."""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or wrong. The message names section, key and the fix."""

    def __init__(self, section: str, key: str | None, reason: str) -> None:
        where = f"[{section}] {key}" if key else f"[{section}]"
        super().__init__(f"config: {where}: {reason}")
        self.section, self.key, self.reason = section, key, reason
