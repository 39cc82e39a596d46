-- Customers, the channel-independent conversation history, calls and their per-turn timings.
-- Times are ISO-8601 UTC text; durations are milliseconds (REAL, as measured).

CREATE TABLE customers (
    id            INTEGER PRIMARY KEY,
    phone         TEXT NOT NULL UNIQUE,          -- E.164, without any "whatsapp:" prefix
    name          TEXT,
    language      TEXT,                          -- ISO 639-1, e.g. "he"
    gender        TEXT,                          -- "f" / "m" where the language needs it
    notes         TEXT NOT NULL DEFAULT '',
    tags          TEXT NOT NULL DEFAULT '',      -- comma separated
    opted_out     INTEGER NOT NULL DEFAULT 0,    -- STOP received on messaging
    first_contact TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    last_contact  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

CREATE TABLE calls (
    id          INTEGER PRIMARY KEY,
    call_sid    TEXT NOT NULL UNIQUE,
    stream_sid  TEXT,
    customer_id INTEGER REFERENCES customers(id),
    caller      TEXT NOT NULL DEFAULT '',
    mode        TEXT NOT NULL,                   -- "stream" or "gather"
    started_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    ended_at    TEXT,
    outcome     TEXT NOT NULL DEFAULT 'in_progress',
        -- in_progress, completed, transferred, caller_hung_up, failed, message_taken
    next_action TEXT,                            -- what the <Connect action> answers: transfer, goodbye, fallback
    transfer_to TEXT,
    error       TEXT
);

-- One row per message of a conversation, whatever the channel: the memory the engine reads.
CREATE TABLE turns (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER REFERENCES customers(id),
    channel     TEXT NOT NULL,                   -- call, gather, whatsapp, sms, chat
    call_id     INTEGER REFERENCES calls(id),
    role        TEXT NOT NULL CHECK (role IN ('user','assistant','tool')),
    text        TEXT NOT NULL,                   -- for the bot: what the caller heard
    full_text   TEXT,                            -- for the bot: the whole reply as generated
    interrupted INTEGER NOT NULL DEFAULT 0,
    model       TEXT,                            -- which model answered: gemini:<name> / local:<file>
    tool_name   TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX turns_customer ON turns(customer_id, id);
CREATE INDEX turns_call ON turns(call_id, id);

-- Per caller turn on a streamed call: names as in shared/notes/latency.md.
CREATE TABLE call_turns (
    id                 INTEGER PRIMARY KEY,
    call_id            INTEGER NOT NULL REFERENCES calls(id),
    turn_index         INTEGER NOT NULL,
    transcript         TEXT NOT NULL,
    language           TEXT,
    reply_text         TEXT,
    heard_text         TEXT,
    interrupted        INTEGER NOT NULL DEFAULT 0,
    model              TEXT,
    end_of_speech_ms   REAL,     -- media clock, ms since stream start
    endpoint_wait_ms   REAL,
    stt_ms             REAL,
    llm_ttft_ms        REAL,
    first_clause_ms    REAL,
    tts_first_audio_ms REAL,
    overhead_ms        REAL,
    turn_latency_ms    REAL,
    heard_latency_ms   REAL,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (call_id, turn_index)
);
