"""The owner's password: hashlib.scrypt with a random salt, one row in admin_password.

`set_password` (the `appliance admin set-password` command) also ends every session, so a
changed password logs out whoever knew the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass

MIN_LENGTH = 10
# RFC 7914's interactive parameters: ~50 ms and 16 MiB per check on a small box.
N, R, P = 2 ** 14, 8, 1


class PasswordError(ValueError):
    """The new password is not acceptable; the message says why."""


@dataclass(frozen=True)
class StoredHash:
    hash: bytes
    salt: bytes
    n: int
    r: int
    p: int


def derive(password: str, salt: bytes, n: int = N, r: int = R, p: int = P) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=128 * n * r * p * 2, dklen=32)


def make_hash(password: str) -> StoredHash:
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"the password must have at least {MIN_LENGTH} characters")
    salt = secrets.token_bytes(16)
    return StoredHash(derive(password, salt), salt, N, R, P)


def verify(password: str, stored: StoredHash) -> bool:
    return hmac.compare_digest(derive(password, stored.salt, stored.n, stored.r, stored.p),
                               stored.hash)


def load(conn: sqlite3.Connection) -> StoredHash | None:
    row = conn.execute("SELECT hash, salt, n, r, p FROM admin_password WHERE id = 1").fetchone()
    if row is None:
        return None
    return StoredHash(bytes.fromhex(row["hash"]), bytes.fromhex(row["salt"]), row["n"],
                      row["r"], row["p"])


def store(conn: sqlite3.Connection, stored: StoredHash) -> None:
    """Write the hash (inside the caller's write transaction) and end every session."""
    conn.execute("INSERT INTO admin_password(id, hash, salt, n, r, p) VALUES (1, ?, ?, ?, ?, ?) "
                 "ON CONFLICT(id) DO UPDATE SET hash = excluded.hash, salt = excluded.salt, "
                 "n = excluded.n, r = excluded.r, p = excluded.p, "
                 "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                 (stored.hash.hex(), stored.salt.hex(), stored.n, stored.r, stored.p))
    conn.execute("DELETE FROM admin_sessions")
