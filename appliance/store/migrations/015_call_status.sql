-- Twilio's status callback (POST /call-status) closes every call record, in both modes: the
-- call's final CallStatus and its CallDuration as Twilio measured it.
ALTER TABLE calls ADD COLUMN twilio_status TEXT;
ALTER TABLE calls ADD COLUMN duration_s INTEGER;
