"""WhatsApp and SMS through Twilio, answered by the same conversation engine as calls.

webhooks (POST /message, /message-status; start/stop) -> store (SQL, migration 004) ->
inbound (one worker per customer: opt-out, media, engine) -> outbox (the only way out:
ordered, retried, never twice) ; pure helpers: format (per-channel text, SMS segments),
optout, window (WhatsApp's 24 hours), notices (fixed replies), media (download, decode, STT).
"""
