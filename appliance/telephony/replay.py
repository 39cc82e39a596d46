"""A short memory of signed webhooks already answered: a captured, correctly signed request
played back (within `window_s`) is refused instead of acted on again.

Twilio's signature has no timestamp or nonce, so a signature is valid forever; the key here is
the path, the signature and every form field. Twilio itself never sends a byte-identical
request twice on /voice, /voice-stream or /dial-status (a retry after a time-out is the one
case; it is answered with the 403 a replay gets, and the call goes to Twilio's fallback URL).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping


class ReplayCache:
    def __init__(self, window_s: float = 300.0, max_entries: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self.max_entries, self._clock = window_s, max_entries, clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()   # key -> when first seen

    @staticmethod
    def key(path_qs: str, signature: str, params: Mapping[str, str]) -> bytes:
        digest = hashlib.sha256()
        for part in (path_qs, signature, *(f"{k}={v}" for k, v in sorted(params.items()))):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\x00")
        return digest.digest()

    def first_time(self, key: bytes) -> bool:
        """True the first time `key` is seen within the window (and remembers it)."""
        now = self._clock()
        while self._seen and (next(iter(self._seen.values())) < now - self.window_s
                              or len(self._seen) >= self.max_entries):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True
