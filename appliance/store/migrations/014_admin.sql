-- The owner's dashboard (appliance/admin): its password, login sessions and login attempts.
-- Numbered after the issue (014) so that it cannot collide with other features' migrations.

-- One row: the owner's password as hashlib.scrypt(password, salt, n, r, p), hex encoded.
CREATE TABLE admin_password (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    hash       TEXT NOT NULL,
    salt       TEXT NOT NULL,
    n          INTEGER NOT NULL,
    r          INTEGER NOT NULL,
    p          INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- A logged-in browser. The cookie holds a random token; only its sha256 is stored here, so a
-- copy of the database does not log anyone in. Setting a new password ends every session.
CREATE TABLE admin_sessions (
    token_hash TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,                    -- echoed in every form of this session
    via        TEXT NOT NULL DEFAULT 'password', -- password, cloudflare_access
    ip         TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,                    -- unix seconds (the injected clock)
    expires_at REAL NOT NULL
);
CREATE INDEX admin_sessions_expiry ON admin_sessions(expires_at);

-- Every login attempt; the rate limit (per address and for all addresses) counts failures.
CREATE TABLE admin_login_attempts (
    id      INTEGER PRIMARY KEY,
    ip      TEXT NOT NULL,
    ok      INTEGER NOT NULL,
    at      REAL NOT NULL                        -- unix seconds
);
CREATE INDEX admin_login_attempts_ip ON admin_login_attempts(ip, at);
CREATE INDEX admin_login_attempts_at ON admin_login_attempts(at);
