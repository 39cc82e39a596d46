"""Named crash points for the kill -9 tests: with APPLIANCE_FAILPOINT=<name> in the
environment, the process kills itself (SIGKILL, no clean-up) when it reaches that point.
Unset (always, in production) `hit()` is one dictionary lookup."""

from __future__ import annotations

import os
import signal

ENV = "APPLIANCE_FAILPOINT"


def hit(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
