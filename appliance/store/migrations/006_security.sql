-- Issue 13: caller attestation, one-time codes for voice step-up.

-- What Twilio's StirVerstat said about the caller ID ("TN-Validation-Passed-A" = attested).
ALTER TABLE calls ADD COLUMN attestation TEXT NOT NULL DEFAULT '';

-- A one-time code sent to the customer's own number that the caller reads back before a
-- voice call may change, cancel or read out their appointments. Stored hashed.
CREATE TABLE verification_codes (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    call_id     INTEGER REFERENCES calls(id),
    salt        TEXT NOT NULL,
    code_hash   TEXT NOT NULL,                     -- sha256(salt + code), hex
    expires_at  TEXT NOT NULL,                     -- UTC, YYYY-MM-DDTHH:MM:SSZ
    attempts    INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'verified', 'void')),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX verification_codes_customer ON verification_codes(customer_id, id);
