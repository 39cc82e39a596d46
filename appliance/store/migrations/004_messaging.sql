-- Messaging (WhatsApp and SMS through Twilio): every inbound message and its media, every
-- outbound message (the outbox), Twilio's status callbacks, and opt-out/opt-in events.
-- Times are ISO-8601 UTC text with milliseconds ('2025-01-31T09:15:02.123Z'); they sort as text.
-- The conversation itself (turns) and the customer record (customers) are shared with calls.

-- One row per MessageSid: a retried webhook finds its row and is not answered again.
CREATE TABLE messages_in (
    id           INTEGER PRIMARY KEY,
    message_sid  TEXT NOT NULL UNIQUE,
    channel      TEXT NOT NULL CHECK (channel IN ('whatsapp','sms')),
    phone        TEXT NOT NULL,                  -- the customer, E.164 without "whatsapp:"
    from_address TEXT NOT NULL,                  -- as Twilio sent it: whatsapp:+9725... / +9725...
    to_address   TEXT NOT NULL,                  -- the business address the customer wrote to
    body         TEXT NOT NULL DEFAULT '',
    num_media    INTEGER NOT NULL DEFAULT 0,
    profile_name TEXT,                           -- WhatsApp ProfileName
    state        TEXT NOT NULL DEFAULT 'received'
                 CHECK (state IN ('received','replied','ignored')),
        -- received: stored, not answered yet (answered again after a restart)
        -- replied:  the answer is in messages_out, written in the same transaction
        -- ignored:  deliberately not answered (the customer opted out)
    kind         TEXT,                           -- text, voice, media, empty, opt_out, opt_in
    text         TEXT,                           -- what the engine was given (body / transcript)
    language     TEXT,                           -- heard in a voice note, or the reply's language
    error        TEXT,                           -- why the answer is an apology, if it is
    received_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    handled_at   TEXT
);
CREATE INDEX messages_in_open ON messages_in(state, phone, id);
CREATE INDEX messages_in_phone ON messages_in(phone, channel, id);

-- Every MediaUrlN of an inbound message, recorded when the message is stored.
CREATE TABLE message_media (
    id           INTEGER PRIMARY KEY,
    message_id   INTEGER NOT NULL REFERENCES messages_in(id),
    position     INTEGER NOT NULL,               -- N in MediaUrlN
    url          TEXT NOT NULL,
    content_type TEXT NOT NULL,
    kind         TEXT NOT NULL,                  -- voice, image, video, document, other
    status       TEXT NOT NULL DEFAULT 'received',
        -- received, transcribed, unusable (no speech), failed (download/decode), unsupported
    bytes        INTEGER,
    duration_ms  INTEGER,
    transcript   TEXT,
    language     TEXT,
    detail       TEXT,
    UNIQUE (message_id, position)
);

-- The outbox: every message the appliance sends, in order per customer (phone).
CREATE TABLE messages_out (
    id                 INTEGER PRIMARY KEY,
    in_id              INTEGER REFERENCES messages_in(id),   -- what it answers (NULL: proactive)
    part               INTEGER NOT NULL DEFAULT 0,           -- parts of one answer, in order
    purpose            TEXT NOT NULL DEFAULT 'reply',
        -- reply, notice, apology, opt_out, opt_in, template (after a 63016), proactive
    replaces_id        INTEGER REFERENCES messages_out(id),  -- template sent instead of this one
    channel            TEXT NOT NULL CHECK (channel IN ('whatsapp','sms')),
    phone              TEXT NOT NULL,
    to_address         TEXT NOT NULL,
    from_address       TEXT NOT NULL,
    body               TEXT NOT NULL,                        -- formatted for the channel
    content_sid        TEXT,                                 -- set when sent as a template
    state              TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                       ('pending','sending','unknown','sent','delivered','read',
                        'undelivered','failed','cancelled')),
        -- pending:   to send at next_attempt_at
        -- sending:   the request to Twilio is (or was, at a crash) in flight
        -- unknown:   Twilio may or may not have it (crash, timeout, 5xx): looked up before
        --            any new attempt, never blindly sent again
        -- sent:      Twilio accepted it (twilio_sid); then delivered/read/undelivered/failed
        --            from the status callback; cancelled: never sent (opted out)
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    TEXT,
    attempt_started_at TEXT,
    twilio_sid         TEXT UNIQUE,
    twilio_status      TEXT,
    error_code         INTEGER,
    error              TEXT,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    sent_at            TEXT,
    updated_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (in_id, part)
);
CREATE INDEX messages_out_open ON messages_out(state, phone, id);
CREATE INDEX messages_out_phone ON messages_out(phone, id);

-- Every status callback, as received (several per message; possibly out of order).
CREATE TABLE message_status_events (
    id          INTEGER PRIMARY KEY,
    out_id      INTEGER REFERENCES messages_out(id),          -- NULL: not a message we sent
    twilio_sid  TEXT NOT NULL,
    status      TEXT NOT NULL,
    error_code  INTEGER,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX message_status_events_sid ON message_status_events(twilio_sid);

-- Opt-out / opt-in history; customers.opted_out holds the current state.
CREATE TABLE message_consent (
    id         INTEGER PRIMARY KEY,
    phone      TEXT NOT NULL,
    channel    TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('opt_out','opt_in')),
    keyword    TEXT NOT NULL,
    message_id INTEGER REFERENCES messages_in(id),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
