"""Login sessions and the login rate limit, both in SQLite, both on an injected clock.

A session is a random token in an HttpOnly, Secure, SameSite=Strict cookie; the table keeps
only its sha256 and the session's CSRF token. The rate limit counts failed logins:
- per address: after FREE_FAILURES failures within WINDOW_S, each further attempt waits
  2, 4, 8 ... seconds (at most MAX_WAIT_S) after the last failure;
- for all addresses together: more than GLOBAL_FAILURES failures in GLOBAL_WINDOW_S lock
  every login until the oldest of them ages out (someone rotating addresses).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from ..store.db import Database

Clock = Callable[[], float]


@dataclass(frozen=True)
class Session:
    token_hash: str
    csrf_token: str
    via: str
    expires_at: float


@dataclass(frozen=True)
class Limits:
    session_s: float = 12 * 3600
    window_s: float = 15 * 60
    free_failures: int = 5
    max_wait_s: float = 15 * 60
    global_window_s: float = 60
    global_failures: int = 30
    failure_delay_s: float = 0.3      # every wrong password is answered this much later


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, db: Database, clock: Clock, limits: Limits | None = None) -> None:
        self.db, self.clock, self.limits = db, clock, limits or Limits()

    async def create(self, via: str, ip: str) -> tuple[str, Session]:
        """A new session; returns (cookie token, session)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(_digest(token), secrets.token_urlsafe(24), via,
                          now + self.limits.session_s)

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM admin_sessions WHERE expires_at < ?", (now,))
            conn.execute("INSERT INTO admin_sessions(token_hash, csrf_token, via, ip, created_at,"
                         " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (session.token_hash, session.csrf_token, via, ip, now,
                          session.expires_at))

        await self.db.write(tx)
        return token, session

    async def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 200:
            return None
        row = await self.db.fetchone(
            "SELECT token_hash, csrf_token, via, expires_at FROM admin_sessions "
            "WHERE token_hash = ? AND expires_at > ?", (_digest(token), self.clock()))
        return Session(**dict(row)) if row is not None else None

    async def end(self, token: str | None) -> None:
        if token:
            await self.db.execute("DELETE FROM admin_sessions WHERE token_hash = ?",
                                  (_digest(token),))

    # -- the rate limit ----------------------------------------------------------------------

    async def wait_before_login(self, ip: str) -> float:
        """Seconds this address must still wait before a login attempt is even checked."""
        now, lim = self.clock(), self.limits

        def read(conn: sqlite3.Connection) -> float:
            mine = [r[0] for r in conn.execute(
                "SELECT at FROM admin_login_attempts WHERE ip = ? AND ok = 0 AND at > ? "
                "ORDER BY at", (ip, now - lim.window_s))]
            wait = 0.0
            if len(mine) >= lim.free_failures:
                backoff = min(lim.max_wait_s, 2.0 ** (len(mine) - lim.free_failures + 1))
                wait = mine[-1] + backoff - now
            everyone = [r[0] for r in conn.execute(
                "SELECT at FROM admin_login_attempts WHERE ok = 0 AND at > ? ORDER BY at DESC "
                "LIMIT ?", (now - lim.global_window_s, lim.global_failures))]
            if len(everyone) >= lim.global_failures:
                wait = max(wait, everyone[-1] + lim.global_window_s - now)
            return max(0.0, wait)

        return await self.db.read(read)

    async def record_attempt(self, ip: str, ok: bool) -> None:
        now = self.clock()

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO admin_login_attempts(ip, ok, at) VALUES (?, ?, ?)",
                         (ip, int(ok), now))
            conn.execute("DELETE FROM admin_login_attempts WHERE at < ?",
                         (now - max(self.limits.window_s, self.limits.global_window_s) * 4,))
            if ok:   # a success clears this address's failures
                conn.execute("DELETE FROM admin_login_attempts WHERE ip = ? AND ok = 0", (ip,))

        await self.db.write(tx)
