"""Speculative replies: started at a pause, cancelled on resume, released only on commit."""

from appliance.turns.speculation import (
    CancelReply,
    ReleaseReply,
    RestartReply,
    SpeculationCounters,
    SpeculativeTurns,
    StartReply,
)


def test_pause_then_commit_with_same_words_releases_the_attempt():
    spec = SpeculativeTurns[str]()
    assert spec.transcript(1, "What are your hours?") == [StartReply(1, "What are your hours?")]
    assert not spec.may_speak(1) and not spec.tools_allowed(1)
    assert spec.commit("what are your hours") == [ReleaseReply(1, ())]
    assert spec.may_speak(1) and spec.tools_allowed(1)
    assert spec.counters == SpeculationCounters(speculative_starts=1,
                                                committed_from_speculation=1)


def test_resume_cancels_and_a_cancelled_attempt_never_speaks():
    spec = SpeculativeTurns[str]()
    spec.transcript(1, "My number is 052.")
    assert spec.resume(1) == [CancelReply(1)]
    assert not spec.may_speak(1)
    assert spec.transcript(2, "My number is 052 881 3344.") == [
        StartReply(2, "My number is 052 881 3344.")]
    assert spec.commit("My number is 052 881 3344.") == [ReleaseReply(2, ())]
    assert not spec.may_speak(1) and spec.may_speak(2)
    assert spec.counters.speculative_starts == 2
    assert spec.counters.cancelled == 1
    assert spec.counters.committed_from_speculation == 1


def test_commit_with_different_words_cancels_and_restarts():
    spec = SpeculativeTurns[str]()
    spec.transcript(1, "I'd like to book.")
    assert spec.commit("I'd like to book a table for two.") == [
        CancelReply(1), RestartReply(2, "I'd like to book a table for two.")]
    assert not spec.may_speak(1) and spec.may_speak(2)
    assert spec.tool_call(2, "book") == "run"
    assert spec.counters == SpeculationCounters(speculative_starts=1, cancelled=1, restarted=1)


def test_commit_without_attempt_restarts_and_empty_turn_has_no_reply():
    spec = SpeculativeTurns[str]()
    assert spec.commit("Hello?") == [RestartReply(1, "Hello?")]
    spec.transcript(7, "um")  # nothing to answer: no attempt
    assert spec.live_attempt is None
    spec.transcript(8, "Hmm, yes")
    assert spec.commit("...") == [CancelReply(2)]
    assert not spec.may_speak(2)


def test_tool_call_held_until_commit():
    spec = SpeculativeTurns[str]()
    spec.transcript(1, "Book me in for ten.")
    assert spec.tool_call(1, "book_appointment") == "hold"
    assert spec.tool_call(1, "send_sms") == "hold"
    assert spec.commit("book me in for ten") == [
        ReleaseReply(1, ("book_appointment", "send_sms"))]
    assert spec.tool_call(1, "transfer") == "run"
    assert spec.counters.tools_held == 2 and spec.counters.tools_dropped == 0


def test_tool_call_dropped_on_cancel():
    spec = SpeculativeTurns[str]()
    spec.transcript(1, "Transfer me to.")
    assert spec.tool_call(1, "transfer") == "hold"
    assert spec.resume(1) == [CancelReply(1)]
    assert spec.tool_call(1, "transfer") == "drop"  # a late call from the cancelled reply
    spec.transcript(2, "Transfer me to sales, please.")
    assert spec.commit("Transfer me to sales, please.") == [ReleaseReply(2, ())]  # not held 1's
    assert spec.counters.tools_dropped == 2
    assert spec.tool_call(99, "x") == "drop"  # unknown attempt


def test_same_words_at_a_later_pause_keep_the_running_attempt():
    spec = SpeculativeTurns[str]()
    spec.transcript(1, "Yes.")
    assert spec.transcript(1, "yes") == []  # re-transcribed: same words
    assert spec.transcript(2, "Yes, and") == [CancelReply(1), StartReply(2, "Yes, and")]
    assert spec.resume(1) == []  # a stale resume does not touch attempt 2
    assert spec.live_attempt == 2


def test_resume_of_other_pause_and_forget():
    spec = SpeculativeTurns[str]()
    spec.transcript(3, "Hi there.")
    assert spec.resume(2) == []
    assert spec.commit("Hi there") == [ReleaseReply(1, ())]
    spec.forget(1)
    assert not spec.may_speak(1)
    assert spec.commit("") == []  # nothing live, nothing said


def test_a_transcript_arriving_after_its_turn_was_committed_starts_nothing():
    spec = SpeculativeTurns[str]()
    assert spec.commit("Hello?", pause_id=4) == [RestartReply(1, "Hello?")]
    assert spec.transcript(4, "Hello?") == [] and spec.transcript(3, "Hi") == []
    assert spec.live_attempt is None
    assert spec.transcript(5, "Are you there?") == [StartReply(2, "Are you there?")]
