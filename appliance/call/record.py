"""The call's record: all SQL on `calls` and `call_turns`, driven by the call's events.

The Media Streams handler never touches SQL: the voice webhooks open the row (`open_call`),
the session applies its events (`apply`), and the <Connect> action reads the plan back
(`plan`). Writes are awaited, so the plan is stored before the WebSocket closes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ..store.db import Database
from .events import CallEnded, CallEvent, TurnCompleted, TurnDecided
from .timing import insert_call_turn


def decision_columns(d: TurnDecided | None) -> dict[str, object]:
    """The turn-taking columns of call_turns (migration 008); empty without a decision."""
    if d is None:
        return {}
    return {"speculative_starts": d.speculative_starts,
            "speculative_cancelled": d.speculative_cancelled,
            "speculative_released": int(d.released), "ended_by": d.ended_by,
            "wait_ms": d.wait_ms, "model_p": d.model_p}


@dataclass(frozen=True)
class CallPlan:
    call_id: int
    customer_id: int | None
    next_action: str | None
    transfer_to: str | None


@dataclass(frozen=True)
class ClosedCall:
    call_id: int
    mode: str               # "stream" or "gather"
    outcome: str
    was_open: bool          # nothing had closed it before the status callback


class CallStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open_call(self, call_sid: str, caller: str, mode: str,
                        attestation: str = "") -> int:
        """The call's row (once per CallSid); `attestation` is Twilio's StirVerstat."""
        def upsert(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO calls (call_sid, caller, mode, attestation) "
                         "VALUES (?, ?, ?, ?) ON CONFLICT(call_sid) DO NOTHING",
                         (call_sid, caller, mode, attestation[:64]))
            return conn.execute("SELECT id FROM calls WHERE call_sid = ?",
                                (call_sid,)).fetchone()[0]
        return await self.db.write(upsert)

    async def call_id(self, call_sid: str) -> int | None:
        row = await self.db.fetchone("SELECT id FROM calls WHERE call_sid = ?", (call_sid,))
        return row["id"] if row else None

    async def plan(self, call_sid: str) -> CallPlan | None:
        row = await self.db.fetchone("SELECT id, customer_id, next_action, transfer_to "
                                     "FROM calls WHERE call_sid = ?", (call_sid,))
        return CallPlan(row["id"], row["customer_id"], row["next_action"],
                        row["transfer_to"]) if row else None

    async def reopen(self, call_sid: str) -> None:
        """The transfer failed: the call goes on with the receptionist."""
        await self.db.execute("UPDATE calls SET outcome = 'in_progress', next_action = NULL "
                              "WHERE call_sid = ?", (call_sid,))

    async def set_mode(self, call_sid: str, mode: str) -> None:
        """An overflow call that was to stream goes to <Gather> instead."""
        await self.db.execute("UPDATE calls SET mode = ? WHERE call_sid = ?", (mode, call_sid))

    async def finish(self, call_id: int, outcome: str) -> None:
        """A <Gather> call the bot ends (goodbye, transfer): its outcome now; the status
        callback adds the duration."""
        await self.db.execute(
            "UPDATE calls SET ended_at = COALESCE(ended_at, strftime('%Y-%m-%dT%H:%M:%fZ',"
            "'now')), outcome = ? WHERE id = ? AND outcome = 'in_progress'", (outcome, call_id))

    async def close_by_status(self, call_sid: str, twilio_status: str, duration_s: int | None,
                              outcome: str) -> ClosedCall | None:
        """Twilio says the call is over: record its status and duration; an outcome still
        in_progress becomes `outcome`. None for a call we have no record of."""
        def close(conn: sqlite3.Connection) -> ClosedCall | None:
            row = conn.execute("SELECT id, mode, outcome FROM calls WHERE call_sid = ?",
                               (call_sid,)).fetchone()
            if row is None:
                return None
            final = outcome if row[2] == "in_progress" else row[2]
            conn.execute(
                "UPDATE calls SET twilio_status = ?, duration_s = ?, outcome = ?, ended_at = "
                "COALESCE(ended_at, strftime('%Y-%m-%dT%H:%M:%fZ','now')) WHERE id = ?",
                (twilio_status, duration_s, final, row[0]))
            return ClosedCall(row[0], row[1], final, row[2] == "in_progress")
        return await self.db.write(close)

    async def set_customer(self, call_id: int, customer_id: int) -> None:
        await self.db.execute("UPDATE calls SET customer_id = ? WHERE id = ?",
                              (customer_id, call_id))

    async def apply(self, event: CallEvent, stream_sid: str) -> None:
        if isinstance(event, TurnCompleted):
            await self.db.write(lambda c: insert_call_turn(
                c, event.call_id, event.turn_index, event.transcript, event.language,
                event.reply_text, event.heard_text, event.interrupted, event.timings,
                decision_columns(event.decided)))
        elif isinstance(event, CallEnded):
            await self.db.write(lambda c: c.execute(
                "UPDATE calls SET ended_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'), outcome = ?, "
                "next_action = ?, transfer_to = ?, stream_sid = ? WHERE id = ?",
                (event.outcome, event.next_action, event.transfer_to, stream_sid,
                 event.call_id)))
