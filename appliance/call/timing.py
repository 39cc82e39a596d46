"""Per-turn timings, named as in shared/notes/latency.md, and their row in call_turns.

All wall times are `time.monotonic()` seconds; end_of_speech is converted from the media clock
with the offset the session keeps (`media_to_wall`). A reply started speculatively in a pause
and released at the commit did its work before the turn was decided, so its stage columns
(stt_ms, llm_ttft_ms ...) can be negative; turn_latency stays end of speech -> first frame.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((b - a) * 1000, 1)


@dataclass(frozen=True)
class TurnTimes:
    """Seconds on the call's clock (None: that stage did not happen); see as_row(). A turn's
    times are replaced (`dataclasses.replace`) as its stages complete."""

    end_of_speech_ms: int             # media clock
    endpoint_wait_ms: int             # audio time waited after end of speech
    end_of_speech_at: float           # wall time of end of speech
    decided_at: float                 # wall time the turn was declared over
    transcript_at: float | None = None
    first_token_at: float | None = None
    first_clause_at: float | None = None
    first_audio_at: float | None = None
    first_frame_at: float | None = None
    first_heard_at: float | None = None
    start_ms: int = 0                 # media clock: onset of the caller's turn
    model: str | None = None

    def as_row(self) -> dict[str, float | None]:
        turn_latency = _ms(self.end_of_speech_at, self.first_frame_at)
        stt = _ms(self.decided_at, self.transcript_at)
        llm = _ms(self.transcript_at, self.first_token_at)
        clause = _ms(self.transcript_at, self.first_clause_at)
        tts = _ms(self.first_clause_at, self.first_audio_at)
        overhead = None
        if None not in (turn_latency, stt, clause, tts):
            overhead = round(turn_latency - self.endpoint_wait_ms - stt - clause - tts, 1)
        return {
            "end_of_speech_ms": self.end_of_speech_ms,
            "endpoint_wait_ms": self.endpoint_wait_ms,
            "stt_ms": stt,
            "llm_ttft_ms": llm,
            "first_clause_ms": clause,
            "tts_first_audio_ms": tts,
            "overhead_ms": overhead,
            "turn_latency_ms": turn_latency,
            "heard_latency_ms": _ms(self.end_of_speech_at, self.first_heard_at),
        }


def insert_call_turn(conn: sqlite3.Connection, call_id: int, turn_index: int, transcript: str,
                     language: str | None, reply_text: str, heard_text: str, interrupted: bool,
                     timings: TurnTimes, extra: dict[str, object] | None = None) -> int:
    row: dict[str, object] = {**timings.as_row(), **(extra or {})}
    cols = ["call_id", "turn_index", "transcript", "language", "reply_text", "heard_text",
            "interrupted", "model", *row]
    values = [call_id, turn_index, transcript, language, reply_text, heard_text, int(interrupted),
              timings.model, *row.values()]
    sql = (f"INSERT INTO call_turns ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})")
    return conn.execute(sql, values).lastrowid

