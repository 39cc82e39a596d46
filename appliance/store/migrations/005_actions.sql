-- The business actions (appliance/actions): appointments, messages taken for the owner, what
-- was done in each conversation, the e-mail outbox, the per-customer outbound count, summaries.
-- Times are ISO-8601 UTC text; appointment times are exactly 'YYYY-MM-DDTHH:MM:SSZ' so that
-- text order is time order (the overlap checks below rely on it).

CREATE TABLE appointments (
    id          INTEGER PRIMARY KEY,
    uid         TEXT NOT NULL UNIQUE,              -- iCalendar UID, kept when moved
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    resource    INTEGER NOT NULL DEFAULT 1,        -- 1..[appointments] resource_count
    start_utc   TEXT NOT NULL CHECK (start_utc GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
    end_utc     TEXT NOT NULL CHECK (end_utc GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'),
    status      TEXT NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'cancelled')),
    note        TEXT NOT NULL DEFAULT '',          -- what it is for, in the customer's words
    channel     TEXT NOT NULL DEFAULT '',          -- where it was booked: call, whatsapp ...
    call_id     INTEGER REFERENCES calls(id),
    google_event_id TEXT,                          -- the mirrored Google Calendar event
    google_state    TEXT NOT NULL DEFAULT '',      -- '' (no sync), pending, synced
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    CHECK (end_utc > start_utc)
);
-- Double booking is impossible in the database itself, whatever the code above it does:
-- one booked appointment per resource and start ...
CREATE UNIQUE INDEX appointments_one_per_slot ON appointments(resource, start_utc)
    WHERE status = 'booked';
CREATE INDEX appointments_time ON appointments(start_utc);
CREATE INDEX appointments_customer ON appointments(customer_id, start_utc);
-- ... and no two booked appointments of one resource overlap at all.
CREATE TRIGGER appointments_no_overlap_insert BEFORE INSERT ON appointments
WHEN NEW.status = 'booked' AND EXISTS (
    SELECT 1 FROM appointments a
    WHERE a.status = 'booked' AND a.resource = NEW.resource
      AND a.start_utc < NEW.end_utc AND NEW.start_utc < a.end_utc)
BEGIN
    SELECT RAISE(ABORT, 'appointment overlaps a booked appointment');
END;
CREATE TRIGGER appointments_no_overlap_update BEFORE UPDATE OF start_utc, end_utc, resource, status
ON appointments
WHEN NEW.status = 'booked' AND EXISTS (
    SELECT 1 FROM appointments a
    WHERE a.id <> NEW.id AND a.status = 'booked' AND a.resource = NEW.resource
      AND a.start_utc < NEW.end_utc AND NEW.start_utc < a.end_utc)
BEGIN
    SELECT RAISE(ABORT, 'appointment overlaps a booked appointment');
END;

-- "Take a message": what the customer wants the owner to know.
CREATE TABLE taken_messages (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    call_id     INTEGER REFERENCES calls(id),
    channel     TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',          -- as the customer gave it
    text        TEXT NOT NULL,
    urgent      INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'done')),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX taken_messages_customer ON taken_messages(customer_id, id);

-- What the tools did, per conversation: the "what was done" of the owner's summary.
CREATE TABLE action_log (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER REFERENCES customers(id),
    call_id     INTEGER REFERENCES calls(id),
    channel     TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL,
        -- booked, moved, cancelled, message, info_sent, transfer, transfer_refused, refused
    detail      TEXT NOT NULL DEFAULT '',
    needs_human INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX action_log_call ON action_log(call_id, id);
CREATE INDEX action_log_customer ON action_log(customer_id, created_at);

-- Every message a conversation caused to leave the box (or was refused): the per-customer
-- rate limit counts these rows; `counted` = 0 for the owner's summaries.
CREATE TABLE notify_log (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER REFERENCES customers(id),
    channel     TEXT NOT NULL,                     -- whatsapp, sms, email
    recipient   TEXT NOT NULL,                     -- "customer" or "owner" (no numbers here)
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL,                     -- sent, queued, rate_limited, failed, refused
    counted     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL                      -- from the injected clock
);
CREATE INDEX notify_log_customer ON notify_log(customer_id, created_at);

-- Mail to the owner, sent by a background task with retries: a mail server that is down
-- delays a summary, it never loses it.
CREATE TABLE email_outbox (
    id              INTEGER PRIMARY KEY,
    dedupe_key      TEXT UNIQUE,                   -- e.g. summary:call:12 (queued once)
    to_addr         TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX email_outbox_due ON email_outbox(status, next_attempt_at);

-- The owner's summary of each call (call_id) or messaging conversation (call_id NULL).
CREATE TABLE owner_summaries (
    id          INTEGER PRIMARY KEY,
    call_id     INTEGER UNIQUE REFERENCES calls(id),
    customer_id INTEGER REFERENCES customers(id),
    since       TEXT,
    subject     TEXT NOT NULL,
    text        TEXT NOT NULL,
    needs_human INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- Small values of the actions: the calendar feed token when not given by the environment.
CREATE TABLE actions_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
