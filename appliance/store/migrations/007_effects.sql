-- Issue 13: side effects of an inbound message happen once, however often it is answered.

-- How often answering a message was started (a crash mid-answer starts it again).
ALTER TABLE messages_in ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

-- A tool run for an inbound message, keyed by MessageSid + tool + arguments: a second answer
-- of the same message gets the recorded result instead of running the tool again.
CREATE TABLE tool_effects (
    key        TEXT PRIMARY KEY,
    result     TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- A message a tool caused (confirmation, owner notice), queued once per key.
ALTER TABLE messages_out ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX messages_out_dedupe ON messages_out(dedupe_key) WHERE dedupe_key IS NOT NULL;
