import pytest

from appliance.audio.endpoint import (
    EndpointDetector,
    EndpointParams,
    SilenceStarted,
    SpeechResumed,
    SpeechStarted,
    TurnEnded,
    classify_text,
)

W = 32  # Silero window, ms
SPEECH, QUIET = 0.9, 0.02


def windows(ms, p):
    return [p] * -(-ms // W)  # whole windows, rounded up


def speech(ms):
    return windows(ms, SPEECH)


def silence(ms):
    return windows(ms, QUIET)


def run(detector, probs, hints=None):
    """Feed a timeline; ``hints`` maps pause number (1-based, in order of SilenceStarted) to the
    speculative transcript delivered right after that SilenceStarted. Returns all events."""
    hints = hints or {}
    events, pauses = [], 0
    for p in probs:
        new = detector.process(p, W)
        events += new
        for e in new:
            if isinstance(e, SilenceStarted):
                pauses += 1
                if pauses in hints:
                    events += detector.hint(hints[pauses], e.pause_id)
    return events


def kinds(events):
    return [type(e).__name__ for e in events]


def test_simple_turn_base_wait():
    events = run(EndpointDetector(), silence(320) + speech(960) + silence(800))
    assert events == [
        SpeechStarted(at_ms=320),
        SilenceStarted(at_ms=1280, pause_id=1),
        TurnEnded(start_ms=320, end_of_speech_ms=1280, endpoint_wait_ms=512,
                  reason="silence", text_class=None),
    ]


def test_end_of_speech_is_end_of_last_voiced_window_not_decision_time():
    det = EndpointDetector(start_ms=10_000)  # aligned to a media timestamp
    events = run(det, speech(640) + silence(640))
    turn = events[-1]
    assert isinstance(turn, TurnEnded)
    assert turn.start_ms == 10_000
    assert turn.end_of_speech_ms == 10_640
    assert turn.end_of_speech_ms + turn.endpoint_wait_ms == 10_640 + 512
    assert det.now_ms == 11_280 and not det.in_turn


def test_click_is_not_a_turn():
    det = EndpointDetector()
    assert run(det, silence(320) + speech(96) + silence(1000) + [0.99] + silence(1000)) == []


def test_min_speech_counts_from_onset():
    events = run(EndpointDetector(), silence(64) + speech(128) + silence(600))
    assert kinds(events) == ["SpeechStarted", "SilenceStarted", "TurnEnded"]
    assert events[0].at_ms == 64


def test_hysteresis():
    det = EndpointDetector()
    # 0.4 is below the start threshold: no speech from it alone.
    assert run(det, windows(640, 0.4)) == []
    # ... but it keeps an existing run voiced.
    events = run(det, speech(128) + windows(640, 0.4) + silence(600))
    turn = events[-1]
    assert turn.end_of_speech_ms - events[0].at_ms == 128 + 640


def test_short_gaps_do_not_announce_silence():
    events = run(EndpointDetector(), speech(320) + silence(64) + speech(320) + silence(600))
    assert kinds(events) == ["SpeechStarted", "SilenceStarted", "TurnEnded"]


def test_no_thank_you_goodbye_complete_gives_short_wait():
    # "No, thank you. Goodbye." with short breaths inside; the speculative transcript of the
    # final pause is complete -> the short wait applies instead of the base wait.
    timeline = speech(256) + silence(64) + speech(480) + silence(64) + speech(544) + silence(1000)
    events = run(EndpointDetector(), timeline, hints={1: "No, thank you. Goodbye."})
    assert kinds(events) == ["SpeechStarted", "SilenceStarted", "TurnEnded"]
    turn = events[-1]
    assert turn.text_class == "complete"
    assert turn.endpoint_wait_ms == 256  # 250 ms rounded up to whole windows
    assert turn.end_of_speech_ms == 256 + 64 + 480 + 64 + 544
    # Without the hint the same audio waits the base 500 ms.
    assert run(EndpointDetector(), timeline)[-1].endpoint_wait_ms == 512


def test_late_hint_ends_turn_at_once():
    det = EndpointDetector()
    events = run(det, speech(640) + silence(288))  # hint arrives after 288 ms of silence
    assert kinds(events) == ["SpeechStarted", "SilenceStarted"]
    pause_id = events[1].pause_id
    ended = det.hint("Yes, that's right.", pause_id)
    assert len(ended) == 1
    assert ended[0].endpoint_wait_ms == 288 and ended[0].text_class == "complete"
    assert not det.in_turn


def test_phone_number_with_pauses_waits_long():
    # "My number is zero five four ... one two three ... four five six seven", 400 ms pauses.
    groups = [speech(1504), silence(416), speech(896), silence(416), speech(1216)]
    timeline = sum(groups, []) + silence(2000)
    hints = {
        1: "My number is 054,",
        2: "My number is 054, 123,",
        3: "My number is 054, 123, 4567.",
    }
    events = run(EndpointDetector(), timeline, hints)
    assert kinds(events) == [
        "SpeechStarted",
        "SilenceStarted", "SpeechResumed",
        "SilenceStarted", "SpeechResumed",
        "SilenceStarted", "TurnEnded",
    ]
    turn = events[-1]
    assert turn.text_class == "neutral"  # ten digits: a whole number, no long wait
    assert turn.endpoint_wait_ms == 512
    assert turn.end_of_speech_ms == 1504 + 416 + 896 + 416 + 1216
    resumed = [e for e in events if isinstance(e, SpeechResumed)]
    assert [r.pause_ms for r in resumed] == [416, 416]


def test_phone_number_pauses_without_hints_do_not_end_turn():
    timeline = speech(1504) + silence(416) + speech(896) + silence(416) + speech(1216)
    events = run(EndpointDetector(), timeline + silence(800))
    assert kinds(events).count("TurnEnded") == 1
    assert events[-1].end_of_speech_ms == 1504 + 416 + 896 + 416 + 1216


def test_spelled_digits_hint_keeps_waiting_past_base_wait():
    det = EndpointDetector()
    events = run(det, speech(960) + silence(128), hints={1: "five four"})
    events += run(det, silence(960))  # 1088 ms of silence: past base, short of long wait
    assert not any(isinstance(e, TurnEnded) for e in events)
    events = run(det, silence(128))
    assert isinstance(events[-1], TurnEnded) and events[-1].endpoint_wait_ms == 1216


def test_trailing_conjunction_waits_long_then_resumes():
    det = EndpointDetector()
    events = run(det, speech(960) + silence(800) + speech(640) + silence(600),
                 hints={1: "I want to book a table and", 2: "I want to book a table and a cake."})
    assert kinds(events) == ["SpeechStarted", "SilenceStarted", "SpeechResumed",
                             "SilenceStarted", "TurnEnded"]
    assert events[2].pause_ms == 800
    assert events[-1].endpoint_wait_ms == 256


def test_stale_hints_are_ignored():
    det = EndpointDetector()
    first = run(det, speech(640) + silence(128))
    old_pause = first[-1].pause_id
    run(det, speech(320) + silence(128))
    assert det.hint("Thanks.", old_pause) == []  # a newer pause is current
    assert det.current_wait_ms == 500
    run(det, speech(64))
    assert det.hint("Thanks.") == []  # in speech: nothing to do


def test_blip_in_pause_counts_as_silence_but_never_ends_turn_mid_blip():
    det = EndpointDetector()
    events = run(det, speech(640) + silence(448) + [0.9])  # 480 ms, then a one-window blip
    assert kinds(events) == ["SpeechStarted", "SilenceStarted"]
    events = run(det, silence(32))  # blip over: 512 ms since the last real voiced window
    assert isinstance(events[-1], TurnEnded)
    assert events[-1].end_of_speech_ms == 640 and events[-1].endpoint_wait_ms == 512


def test_resume_needs_resume_min_ms():
    det = EndpointDetector()
    run(det, speech(640) + silence(256))
    assert run(det, [0.9]) == []
    events = run(det, [0.9])  # 64 ms voiced: the pause is over
    assert events == [SpeechResumed(at_ms=896, pause_ms=256, pause_id=1)]
    assert det.end_of_speech_ms == 960


def test_long_turn_is_cut_at_max_length():
    det = EndpointDetector(EndpointParams(max_turn_ms=10_000))
    events = run(det, silence(96) + speech(12_000))
    turns = [e for e in events if isinstance(e, TurnEnded)]
    assert len(turns) == 1
    assert turns[0].reason == "max_length"
    assert turns[0].start_ms == 96
    assert turns[0].end_of_speech_ms == 96 + 10_016 and turns[0].endpoint_wait_ms == 0
    # The caller keeps talking: a new turn starts after min_speech.
    assert kinds(events[-2:]) == ["TurnEnded", "SpeechStarted"]


def test_default_max_turn_is_30s():
    events = run(EndpointDetector(), speech(31_008))
    assert [e.reason for e in events if isinstance(e, TurnEnded)] == ["max_length"]


def test_reset_drops_turn():
    det = EndpointDetector()
    run(det, speech(640))
    assert det.in_turn
    det.reset(at_ms=5000)
    assert not det.in_turn and det.now_ms == 5000 and det.end_of_speech_ms is None
    assert run(det, silence(1000)) == []


def test_params_validation_and_waits():
    p = EndpointParams()
    assert (p.wait_for("complete"), p.wait_for(None), p.wait_for("neutral")) == (250, 500, 500)
    assert p.wait_for("digits") == p.wait_for("incomplete") == 1200
    with pytest.raises(ValueError):
        EndpointParams(start_threshold=0.3, continue_threshold=0.5)
    with pytest.raises(ValueError):
        EndpointParams(short_wait_ms=600)
    with pytest.raises(ValueError):
        EndpointDetector().process(0.9, 0)


@pytest.mark.parametrize("text, expected", [
    ("No, thank you. Goodbye.", "complete"),
    ("Yes.", "complete"),
    ("What are your opening hours on Friday?", "complete"),
    ("thank you", "complete"),
    ("ok bye", "complete"),
    ("Здравствуйте, сколько стоит доставка?", "complete"),
    ("שלום, אני רוצה לקבוע תור למחר בבוקר.", "complete"),
    ("спасибо", "complete"),
    ("a table for two.", "complete"),
    ("I'd like that one.", "complete"),
    ("My number is zero five four", "digits"),
    ("My number is 054-123", "digits"),
    ("My number is 054, 123, 4567.", "neutral"),  # ten digits: the number is complete
    ("My number is 052.", "digits"),  # Whisper's full stop after a digit group
    ("five four", "digits"),
    ("zero", "digits"),
    ("Is it 054?", "digits"),
    ("ноль пять четыре", "digits"),
    ("אפס חמש ארבע", "digits"),
    ("I want to book and", "incomplete"),
    ("so", "incomplete"),
    ("um", "incomplete"),
    ("Hello, I would like to", "incomplete"),
    ("My number is", "incomplete"),
    ("Well...", "incomplete"),
    ("Здравствуйте,", "incomplete"),
    ("I'll call back later", "neutral"),
    ("", "neutral"),
    ("  ", "neutral"),
])
def test_classify_text(text, expected):
    assert classify_text(text) == expected
