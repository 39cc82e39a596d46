-- Issue 15: a messaging conversation is summarised once it goes quiet (actions/quiet.py).
-- `until` is the last turn a conversation summary covers: the next conversation starts after
-- it, so nothing is summarised twice and nothing that arrived meanwhile is lost.
-- (Numbered 115, not 015, so it cannot collide with another branch's 015.)
ALTER TABLE owner_summaries ADD COLUMN until TEXT;
CREATE UNIQUE INDEX owner_summaries_conversation ON owner_summaries(customer_id, since)
    WHERE call_id IS NULL;
