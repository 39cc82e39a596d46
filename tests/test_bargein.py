import pytest

from appliance.audio.bargein import (
    BargeInDetector,
    BargeInParams,
    CheckUtterance,
    Interrupt,
    PauseBot,
    ResumeBot,
    classify_interjection,
)

W = 32


def speech(ms):
    return [0.9] * -(-ms // W)


def silence(ms):
    return [0.02] * -(-ms // W)


def run(det, probs):
    events = []
    for p in probs:
        events += det.process(p, W)
    return events


def kinds(events):
    return [type(e).__name__ for e in events]


def test_click_does_not_pause_bot():
    det = BargeInDetector()
    assert run(det, silence(320) + speech(96) + silence(640)) == []
    assert not det.bot_paused


def test_pause_is_sent_within_target_of_onset():
    det = BargeInDetector()
    events = run(det, silence(320) + speech(160))
    assert events == [PauseBot(onset_ms=320, at_ms=320 + 128)]
    assert events[0].at_ms - events[0].onset_ms <= 160  # + ~1 window VAD lag < 250 ms
    assert det.bot_paused


def test_backchannel_resumes_bot():
    det = BargeInDetector()
    events = run(det, silence(320) + speech(320) + silence(256))
    assert kinds(events) == ["PauseBot", "CheckUtterance"]
    check = events[1]
    assert check == CheckUtterance(utterance_id=1, start_ms=320, end_of_speech_ms=640)
    assert det.resolve("Mhm.", check.utterance_id) == [ResumeBot(1, "backchannel", "Mhm.")]
    assert not det.bot_paused and not det.done
    # Listening again for the rest of the reply.
    assert kinds(run(det, speech(160))) == ["PauseBot"]


def test_noise_resumes_bot():
    det = BargeInDetector()
    check = run(det, speech(256) + silence(256))[-1]
    assert det.resolve("", check.utterance_id) == [ResumeBot(check.utterance_id, "noise", "")]
    check = run(det, speech(256) + silence(256))[-1]
    assert det.resolve(" ... ", check.utterance_id)[0].reason == "noise"


def test_real_words_interrupt():
    det = BargeInDetector()
    events = run(det, silence(64) + speech(448) + silence(256))
    check = events[-1]
    assert isinstance(check, CheckUtterance)
    result = det.resolve("Wait, what time?", check.utterance_id)
    assert result == [
        Interrupt(onset_ms=64, at_ms=det.now_ms, reason="words", text="Wait, what time?")
    ]
    assert det.done and not det.bot_paused
    assert run(det, speech(2000)) == []  # inert until the next reply


def test_sustained_speech_commits_without_text():
    det = BargeInDetector()
    events = run(det, silence(96) + speech(800))
    assert kinds(events) == ["PauseBot", "Interrupt"]
    interrupt = events[1]
    assert interrupt.reason == "sustained_speech" and interrupt.text is None
    assert interrupt.onset_ms == 96
    assert interrupt.at_ms == 96 + 608  # 600 ms of voiced audio, whole windows
    assert det.done


def test_commit_counts_voiced_audio_across_short_gaps():
    det = BargeInDetector()
    events = run(det, speech(320) + silence(128) + speech(320))
    assert kinds(events) == ["PauseBot", "Interrupt"]
    assert events[1].at_ms == 320 + 128 + 288


def test_speech_after_check_makes_resolve_stale_and_continues_utterance():
    det = BargeInDetector()
    first = run(det, speech(256) + silence(256))[-1]
    assert isinstance(first, CheckUtterance)
    run(det, speech(128))  # the caller went on before the transcript came back
    assert det.resolve("okay", first.utterance_id) == []
    assert det.bot_paused
    second = run(det, silence(256))[-1]
    assert second.utterance_id == first.utterance_id + 1
    assert second.start_ms == 0 and second.end_of_speech_ms == 256 + 256 + 128
    assert det.resolve("okay") == [ResumeBot(second.utterance_id, "backchannel", "okay")]


def test_resolve_outside_check_is_ignored():
    det = BargeInDetector()
    assert det.resolve("stop") == []
    run(det, speech(160))
    assert det.resolve("stop") == []  # still speaking: no check asked yet
    assert det.bot_paused


def test_non_interruptible_greeting_ignores_speech():
    det = BargeInDetector(interruptible=False)
    assert run(det, speech(2000) + silence(500)) == []
    det.set_interruptible(True)
    assert kinds(run(det, speech(160))) == ["PauseBot"]


def test_hysteresis_and_thresholds():
    det = BargeInDetector()
    assert run(det, [0.45] * 20) == []  # below start threshold
    events = run(det, [0.6] + [0.4] * 4)  # opened at 0.6, held at 0.4
    assert kinds(events) == ["PauseBot"]


def test_reset_and_timeline_offset():
    det = BargeInDetector(start_ms=60_000)
    events = run(det, speech(160))
    assert events[0].onset_ms == 60_000
    det.reset(at_ms=90_000)
    assert not det.bot_paused and det.now_ms == 90_000


def test_params_validation():
    with pytest.raises(ValueError):
        BargeInParams(pause_after_ms=700, commit_after_ms=600)
    with pytest.raises(ValueError):
        BargeInParams(start_threshold=0.2)
    with pytest.raises(ValueError):
        BargeInDetector().process(0.5, 0)


@pytest.mark.parametrize("text", [
    "mhm", "Mm-hmm.", "Uh-huh.", "uh huh", "Yes.", "yeah yeah", "Okay.", "OK", "ok, right",
    "Right.", "Sure!", "Yep", "I see.", "All right.", "Thank you.",
    "כן", "אוקיי", "כן, בסדר", "да", "Ага.", "угу", "Да, да.",
])
def test_backchannels(text):
    assert classify_interjection(text) == "backchannel"


@pytest.mark.parametrize("text", [
    "No.", "Uh-uh.", "Wait.", "Stop, I want to speak to a person.", "Yes, but how much is it?",
    "okay what about Friday", "לא", "כן, אבל כמה זה עולה?", "нет", "да, но сколько это стоит?",
])
def test_real_words(text):
    assert classify_interjection(text) == "words"


@pytest.mark.parametrize("text", ["", "   ", "...", "?!", "—", " you", "Thanks for watching!"])
def test_noise(text):
    assert classify_interjection(text) == "noise"
