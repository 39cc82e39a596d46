-- Issue 12: how each call turn ended, and what the speculative replies cost.

-- Speculative replies started during the turn's pauses (Gemini requests before the commit).
ALTER TABLE call_turns ADD COLUMN speculative_starts INTEGER;
-- ... of which cancelled (the caller went on, or said something else in the end).
ALTER TABLE call_turns ADD COLUMN speculative_cancelled INTEGER;
-- 1: the reply spoken was a speculative one, released at the commit; 0: generated after it.
ALTER TABLE call_turns ADD COLUMN speculative_released INTEGER;
-- The evidence that ended the turn: model+text, model, text, silence, silence_max, max_length.
ALTER TABLE call_turns ADD COLUMN ended_by TEXT;
-- The adaptive silence (ms) required for the final pause.
ALTER TABLE call_turns ADD COLUMN wait_ms INTEGER;
-- The turn model's P(complete) for the final pause (NULL: no model, or it did not answer).
ALTER TABLE call_turns ADD COLUMN model_p REAL;
