"""The CPU scheduler alone: which job runs next (pure), lanes in priority order, the voice-note
lane's limit, cancelled jobs dropped, and a long note cut into 30 s windows."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from appliance.sched.cpu import CpuScheduler, JobEvent, Lane, Waiting, pick
from appliance.sched.lanes import NoteRecognizer, join_transcripts
from appliance.stt.whisper import Transcript

LIMITS = {Lane.NOTE: 1}


def test_pick_takes_the_best_lane_then_the_oldest() -> None:
    queue = [Waiting(1, Lane.NOTE), Waiting(2, Lane.SPECULATIVE), Waiting(3, Lane.LIVE),
             Waiting(4, Lane.LIVE)]
    assert pick(queue, {}, LIMITS) == 2
    assert pick(queue[:2], {}, LIMITS) == 1
    assert pick([], {}, LIMITS) is None


def test_pick_takes_the_earliest_deadline_within_a_lane_and_lanes_still_come_first() -> None:
    # a reply with seconds of audio queued (due at 3.0) waits for a first clause (due at 1.0)
    queue = [Waiting(1, Lane.LIVE, 3.0), Waiting(2, Lane.LIVE, 1.0), Waiting(3, Lane.LIVE, 1.0)]
    assert pick(queue, {}, LIMITS) == 1                   # then the older of equal deadlines
    assert pick([Waiting(1, Lane.SPECULATIVE, 0.5), Waiting(2, Lane.LIVE, 9.0)], {}, LIMITS) == 1


def test_a_job_due_later_lets_a_job_due_now_go_first() -> None:
    import time

    cpu = CpuScheduler(1)
    gate = threading.Event()
    ran: list[str] = []
    try:
        busy = cpu.submit(Lane.LIVE, gate.wait)                 # the worker is busy
        later = cpu.submit_by(Lane.LIVE, time.perf_counter() + 30, lambda: ran.append("later"))
        now = cpu.submit(Lane.LIVE, ran.append, "now")
        past = cpu.executor(Lane.LIVE).submit_by(time.perf_counter() - 5, lambda: ran.append("past"))
        gate.set()
        for f in (busy, later, now, past):
            f.result(timeout=10)
        assert ran == ["now", "past", "later"]    # a deadline already passed counts as now
    finally:
        cpu.shutdown(wait=True)


def test_pick_keeps_notes_to_their_limit() -> None:
    queue = [Waiting(1, Lane.NOTE), Waiting(2, Lane.NOTE)]
    assert pick(queue, {Lane.NOTE: 0}, LIMITS) == 0
    assert pick(queue, {Lane.NOTE: 1}, LIMITS) is None
    assert pick(queue + [Waiting(3, Lane.LIVE)], {Lane.NOTE: 1}, LIMITS) == 2


def test_a_yielding_lane_waits_while_better_work_runs_or_waits() -> None:
    notes = frozenset({Lane.NOTE})
    queue = [Waiting(1, Lane.NOTE)]
    assert pick(queue, {}, LIMITS, notes) == 0
    assert pick(queue, {Lane.LIVE: 1}, LIMITS, notes) is None            # a turn is running
    assert pick(queue, {Lane.SPECULATIVE: 1}, LIMITS, notes) is None
    assert pick(queue + [Waiting(2, Lane.LIVE)], {Lane.LIVE: 1}, {Lane.LIVE: 1}, notes) is None
    assert pick(queue, {Lane.LIVE: 1}, LIMITS) == 0                     # not yielding: shares
    assert pick(queue, {}, LIMITS, notes, quiet=False) is None          # within the hold-off


def _log(cpu: CpuScheduler) -> list[JobEvent]:
    seen: list[JobEvent] = []
    cpu.subscribe(seen.append)
    return seen


def test_a_live_job_overtakes_queued_notes_and_cancelled_jobs_never_run() -> None:
    cpu = CpuScheduler(1)
    seen = _log(cpu)
    gate = threading.Event()
    ran: list[str] = []
    try:
        busy = cpu.submit(Lane.LIVE, gate.wait)                 # the worker is busy
        notes = [cpu.submit(Lane.NOTE, ran.append, f"note{i}") for i in range(3)]
        dropped = cpu.submit(Lane.SPECULATIVE, ran.append, "stale pause")
        live = cpu.submit(Lane.LIVE, ran.append, "turn")
        assert dropped.cancel()
        gate.set()
        for f in (busy, live, *notes):
            f.result(timeout=10)
        assert ran == ["turn", "note0", "note1", "note2"]
        assert sum(1 for e in seen if e.kind == "dropped") == 1
        status = cpu.status()
        assert status["queued"] == {"live": 0, "speculative": 0, "note": 0}
        assert status["lanes"]["note"]["done"] == 3  # type: ignore[index]
    finally:
        cpu.shutdown(wait=True)


def test_notes_use_one_worker_so_another_is_free_for_a_call() -> None:
    cpu = CpuScheduler(2)
    gate = threading.Event()
    try:
        notes = [cpu.submit(Lane.NOTE, gate.wait) for _ in range(4)]
        turn = cpu.submit(Lane.LIVE, lambda: "heard")
        assert turn.result(timeout=10) == "heard"      # while a note still holds a worker
        assert not any(n.done() for n in notes)
        gate.set()
        assert all(n.result(timeout=10) for n in notes)
    finally:
        cpu.shutdown(wait=True)


def test_exceptions_reach_the_caller_and_shutdown_cancels_the_queue() -> None:
    cpu = CpuScheduler(1)
    gate = threading.Event()
    failing = cpu.submit(Lane.LIVE, lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    cpu.submit(Lane.LIVE, gate.wait)
    waiting = cpu.submit(Lane.NOTE, lambda: None)
    cpu.shutdown()
    assert waiting.cancelled()
    gate.set()
    with pytest.raises(RuntimeError):
        cpu.submit(Lane.LIVE, lambda: None)


def _t(text: str, audio_ms: int = 30000, reason: str | None = None) -> Transcript:
    return Transcript(text, "en", 1.0, 0.01, -0.3, audio_ms, 10.0, reason)


class WindowStt:
    """Records each window it is given and the executor it was told to use."""

    def __init__(self, texts: list[str]) -> None:
        self.texts, self.calls = texts, []

    async def transcribe_async(self, pcm, language_hint=None, *, executor=None):
        self.calls.append((len(pcm), language_hint, executor))
        text = self.texts[len(self.calls) - 1]
        return _t(text, len(pcm) // 16, None if text else "no_speech")


async def test_a_long_note_is_transcribed_window_by_window_in_the_note_lane() -> None:
    cpu = CpuScheduler(1)
    try:
        lane = cpu.executor(Lane.NOTE)
        stt = WindowStt(["hello", "", "see you tuesday"])
        note = NoteRecognizer(stt, lane)
        out = await note.transcribe_async(np.zeros(16000 * 70, dtype=np.float32), "he")
        assert [(n, e) for n, _, e in stt.calls] == [(480000, lane), (480000, lane),
                                                    (160000, lane)]
        assert [h for _, h, _ in stt.calls] == ["he", "en", "en"]   # the note's language once heard
        assert (out.text, out.audio_ms, out.accepted) == ("hello see you tuesday", 70000, True)
    finally:
        cpu.shutdown(wait=True)


def test_joined_transcript_is_rejected_only_when_every_window_is() -> None:
    out = join_transcripts([_t("", reason="no_speech"), _t("", reason="too_short")])
    assert (out.text, out.rejected_reason, out.audio_ms) == ("", "no_speech", 60000)
    ok = join_transcripts([_t("a"), _t("", reason="no_speech")])
    assert ok.accepted and ok.text == "a" and not math.isnan(ok.no_speech_prob)
