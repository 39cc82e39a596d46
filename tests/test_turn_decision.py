"""End-of-turn decisions on synthetic timelines (32 ms VAD windows, signals at each Pause)."""

import pytest

from appliance.turns.decision import (
    Commit,
    Pause,
    Resume,
    TurnDecision,
    TurnDetector,
    TurnParams,
    TurnStarted,
)
from appliance.turns.text import TextSignal

W = 32
SPEECH, QUIET = 0.9, 0.02


def speech(ms):
    return [SPEECH] * -(-ms // W)


def silence(ms):
    return [QUIET] * -(-ms // W)


def run(det, probs, signals=None, delay_windows=0):
    """Feed a timeline. ``signals`` maps the n-th Pause (1-based) to (text, model_p), delivered
    ``delay_windows`` windows after that Pause (as STT and the model take time)."""
    signals = signals or {}
    events, pauses, due = [], 0, []
    for p in probs:
        new = det.frame(p, W)
        events += new
        for e in new:
            if isinstance(e, Pause):
                pauses += 1
                if pauses in signals:
                    due.append((delay_windows, e.pause_id, signals[pauses]))
        still = []
        for left, pause_id, (text, model_p) in due:
            if left > 0:
                still.append((left - 1, pause_id, (text, model_p)))
                continue
            if text is not None:
                events += det.transcript(text, pause_id)
            if model_p is not None:
                events += det.turn_probability(model_p, pause_id)
        due = still
    return events


def commits(events):
    return [e.decision for e in events if isinstance(e, Commit)]


def kinds(events):
    return [type(e).__name__ for e in events]


def test_no_evidence_waits_base():
    events = run(TurnDetector(), silence(320) + speech(960) + silence(900))
    assert events[:2] == [TurnStarted(at_ms=320), Pause(at_ms=1280, pause_id=1)]
    assert commits(events) == [TurnDecision(
        start_ms=320, end_of_speech_ms=1280, decided_ms=1280 + 704, ended_by="silence",
        wait_ms=700, speculative_starts=1, model_p=None, text_signal=None, text=None,
        pause_id=1)]


@pytest.mark.parametrize("text, p, ended_by, wait", [
    ("What are your opening hours?", 0.95, "model+text", 200),
    ("What are your opening hours?", 0.5, "text", 350),
    ("What are your opening hours?", None, "text", 350),
    ("No, thank you. Goodbye.", 0.1, "text", 450),  # the model doubts a closing: text wins
    ("I'd like to book a table for two.", 0.9, "model+text", 350),  # a plain sentence is weak
    ("I'd like to book a table for two.", 0.5, "text", 500),
    ("I'd like to book a table for two.", 0.1, "silence", 700),
    ("Hello.", 0.9, "model", 500),
    ("Hello.", 0.5, "silence", 700),
    ("Hello.", 0.1, "silence", 900),
    ("My number is 052.", 0.97, "silence_max", 1500),  # the model's "done" cannot end this
    ("um", 0.9, "silence_max", 1500),
])
def test_wait_follows_model_and_text(text, p, ended_by, wait):
    events = run(TurnDetector(), speech(640) + silence(2000), {1: (text, p)})
    (decision,) = commits(events)
    assert (decision.ended_by, decision.wait_ms) == (ended_by, wait)
    assert wait <= decision.silence_ms < wait + W
    assert decision.model_p == p and decision.text == text


def test_pending_transcript_never_waits_less_than_base():
    det = TurnDetector()
    events = run(det, speech(640) + silence(1000), {1: (None, 0.95)})
    (decision,) = commits(events)
    assert (decision.ended_by, decision.wait_ms) == ("model", 700)


def test_late_evidence_commits_at_once():
    det = TurnDetector()
    events = run(det, speech(640) + silence(1000), {1: ("Is it open?", 0.9)}, delay_windows=8)
    (decision,) = commits(events)
    assert decision.ended_by == "text"  # the transcript came first and its 350 ms had passed
    assert decision.model_p is None
    assert decision.silence_ms == 160 + 8 * W  # decided when the evidence came, not before


def test_phone_number_read_in_groups_is_never_cut_off():
    timeline = (speech(900) + silence(700) + speech(500) + silence(800) + speech(600)
                + silence(1000))
    signals = {1: ("My number is 052.", 0.96), 2: ("My number is 052 881.", 0.9),
               3: ("My number is 052 881 3344.", 0.95)}
    events = run(TurnDetector(), timeline, signals)
    assert kinds(events) == ["TurnStarted", "Pause", "Resume", "Pause", "Resume", "Pause",
                             "Commit"]
    resumes = [e for e in events if isinstance(e, Resume)]
    assert [r.pause_id for r in resumes] == [1, 2]
    assert resumes[0].pause_ms == 704
    (decision,) = commits(events)
    assert decision.end_of_speech_ms == 928 + 704 + 512 + 800 + 608
    assert (decision.ended_by, decision.wait_ms, decision.speculative_starts) == ("model", 500, 3)


def test_bot_question_holds_short_number():
    det = TurnDetector()
    det.expect("phone")
    events = run(det, speech(500) + silence(1000) + speech(300) + silence(400),
                 {1: ("Zero five two.", 0.9), 2: ("052 881 3344", 0.9)})
    assert kinds(events) == ["TurnStarted", "Pause", "Resume", "Pause", "Commit"]
    assert commits(events)[0].text_signal == TextSignal("finished", "number_complete")
    assert commits(events)[0].ended_by == "model+text"


def test_filler_then_sentence():
    events = run(TurnDetector(), speech(300) + silence(900) + speech(1200) + silence(600),
                 {1: ("Um.", 0.8), 2: ("Um. I'd like to book a table.", 0.92)})
    assert kinds(events) == ["TurnStarted", "Pause", "Resume", "Pause", "Commit"]
    assert commits(events)[0].ended_by == "model+text"


def test_unfinished_hold_ends_at_max_wait():
    events = run(TurnDetector(), speech(640) + silence(3000), {1: ("and", 0.2)})
    (decision,) = commits(events)
    assert (decision.ended_by, decision.wait_ms) == ("silence_max", 1500)


def test_required_silence_follows_evidence():
    det = TurnDetector()
    run(det, speech(640) + silence(192))
    assert det.required_silence_ms == 700  # transcript asked for, not here yet
    det.turn_probability(0.9, 1)
    assert det.required_silence_ms == 700
    det.transcript("Hello.", 1)
    assert det.required_silence_ms == 500
    det.transcript("Hello, and", 1)
    assert det.required_silence_ms == 1500


def test_stale_and_early_evidence_is_ignored():
    det = TurnDetector()
    run(det, speech(640) + silence(64))
    assert det.transcript("Yes.", 1) == []  # no Pause yet: pause 1 not announced
    run(det, silence(128) + speech(320) + silence(192))  # pause 1, resume, pause 2
    assert det.transcript("Yes.", 1) == [] and det.turn_probability(0.99, 1) == []
    assert det.required_silence_ms == 700
    assert det.transcript("Yes.", 3) == []


def test_short_blip_counts_as_silence_and_never_commits_mid_blip():
    det = TurnDetector()
    events = run(det, speech(640) + silence(320) + [SPEECH] + silence(500), {1: ("Yes.", 0.9)})
    (decision,) = commits(events)
    assert decision.end_of_speech_ms == 640
    assert det.frame(0.9, W) == []
    events = run(TurnDetector(), speech(640) + silence(160), {1: ("Yes.", 0.9)})
    assert commits(events) == []


def test_resume_needs_resume_min_ms():
    det = TurnDetector()
    events = run(det, speech(640) + silence(192) + [SPEECH] * 2 + silence(32))
    assert kinds(events) == ["TurnStarted", "Pause", "Resume"]
    assert events[-1] == Resume(at_ms=832, pause_ms=192, pause_id=1)


def test_click_is_not_a_turn_and_hysteresis_holds_a_run():
    assert run(TurnDetector(), silence(320) + speech(96) + silence(2000)) == []
    events = run(TurnDetector(), speech(160) + [0.4] * 10 + silence(800))
    assert commits(events)[0].end_of_speech_ms == 160 + 320  # 0.4 holds an open run


def test_long_turn_is_cut_at_max_length():
    det = TurnDetector(TurnParams(max_turn_ms=3200))
    events = run(det, speech(4000))
    (decision,) = commits(events)
    assert decision.ended_by == "max_length" and decision.decided_ms == 3200
    assert not det.in_turn or det.end_of_speech_ms is not None


def test_reset_and_timeline_alignment():
    det = TurnDetector(start_ms=10_000)
    run(det, speech(640))
    assert det.in_turn and det.end_of_speech_ms == 10_640
    det.reset(at_ms=20_000)
    assert not det.in_turn and det.now_ms == 20_000 and det.end_of_speech_ms is None


def test_bad_inputs():
    det = TurnDetector()
    with pytest.raises(ValueError):
        det.frame(0.5, 0)
    run(det, speech(640) + silence(192))
    with pytest.raises(ValueError):
        det.turn_probability(1.5, 1)
    with pytest.raises(ValueError):
        TurnParams(fast_wait_ms=700)
    with pytest.raises(ValueError):
        TurnParams(model_done=0.2)
    with pytest.raises(ValueError):
        TurnParams(continue_threshold=0.8)


def test_a_caller_who_went_on_after_an_early_commit_gets_longer_waits_from_then_on():
    det = TurnDetector()
    # turn 1: "It's forty five Allenby Road." committed after 350 ms; the caller goes on 800 ms
    # after the end of speech ("third floor"): that commit was early
    first = run(det, speech(900) + silence(800), {1: ("It's forty five Allenby Road.", 0.95)})
    (early,) = commits(first)
    assert (early.ended_by, early.wait_ms) == ("model+text", 350)
    second = run(det, speech(600) + silence(1200), {1: ("Third floor, thank you.", 0.95)})
    (decision,) = commits(second)
    assert decision.start_ms - early.end_of_speech_ms == 800
    assert (decision.ended_by, decision.wait_ms) == ("caller_pauses", 800 + 150)
    assert det.caller_pause_ms == 800


def test_a_pause_the_caller_went_on_after_sets_the_floor_for_the_next_turns_only():
    det = TurnDetector()
    first = run(det, speech(300) + silence(992) + speech(1200) + silence(600),
                {1: ("Um.", 0.8), 2: ("Um. I'd like to book a table.", 0.92)})
    assert commits(first)[0].ended_by == "model+text"          # not within the turn
    run(det, silence(3000))                                      # the bot answers
    second = run(det, speech(500) + silence(1500), {1: ("Yes, please.", 0.9)})
    assert (commits(second)[0].ended_by, commits(second)[0].wait_ms) == (
        "caller_pauses", 992 + 150)


def test_a_new_turn_long_after_the_commit_teaches_nothing_and_the_floor_is_capped():
    det = TurnDetector()
    run(det, speech(600) + silence(400) + silence(3000), {1: ("Is it open today?", 0.9)})
    second = run(det, speech(600) + silence(400), {1: ("Is it open today?", 0.9)})
    assert commits(second)[0].wait_ms == 200 and det.caller_pause_ms == 0
    waits = []
    for det in (TurnDetector(TurnParams(adapt_margin_ms=0)), TurnDetector()):
        run(det, speech(600) + silence(1408) + speech(600) + silence(1600),
            {1: ("and", 0.1), 2: ("and then the", 0.1)})      # went on after 1.4 s
        run(det, silence(3000))
        (decision,) = commits(run(det, speech(600) + silence(1600), {1: ("Thanks, bye.", 0.95)}))
        waits.append(decision.wait_ms)
    assert waits == [200, 1500]                                  # off; capped at max_wait_ms


def _held_pause_turn(det, pause_ms=992):
    """"Um. [pause] I'd like to book a table.": the caller goes on after `pause_ms`."""
    run(det, speech(300) + silence(pause_ms) + speech(1200) + silence(600),
        {1: ("Um.", 0.8), 2: ("Um. I'd like to book a table.", 0.92)})
    run(det, silence(3000))                                      # the bot answers


def _yes_turn(det):
    (decision,) = commits(run(det, speech(500) + silence(1500), {1: ("Yes, please.", 0.9)}))
    run(det, silence(3000))
    return decision.ended_by, decision.wait_ms


def test_the_floor_is_the_longest_held_pause_of_the_whole_call():
    det = TurnDetector()
    _held_pause_turn(det, pause_ms=608)                         # turn 1
    assert _yes_turn(det) == ("caller_pauses", 608 + 150)       # turn 2
    _held_pause_turn(det, pause_ms=1216)                        # turn 3: a longer pause
    assert [_yes_turn(det) for _ in range(3)] == [("caller_pauses", 1216 + 150)] * 3
    _held_pause_turn(det, pause_ms=608)                         # turn 7: a shorter one
    assert _yes_turn(det) == ("caller_pauses", 1216 + 150)      # the floor does not come down
    assert det.caller_pause_ms == 1216
