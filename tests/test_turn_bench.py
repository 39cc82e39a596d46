"""The real-speech turn set and the turn benchmark's Twilio-side metrics."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pytest

from bench import speech_set
from bench.realmodels import RealModelUnavailable
from appliance.server import running
from bench.turn_bench import UNANSWERED, plan_bargeins, run_bargein_call
from bench.turn_metrics import (bargein_clear_ms, percentile, summarize, summarize_bargeins,
                                turn_metrics)
from bench.turn_report import write_report
from bench.turn_specs import TURNS, TurnSpec
from tests.support.calls import MANIFEST, settings_for
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.fixtures import AUDIO_DIR, PUBLIC_URL, TOKEN

LONG_REPLY = ("Of course. We're open Sunday to Thursday from nine to six, and on Friday from nine "
              "to one. Is there anything else I can help you with today?")
ENTRY = {"file": "t.wav", "kind": "phone_number", "speech_start_s": 0.5, "speech_end_s": 5.0,
         "pauses_s": [[2.0, 3.0]]}


def _media(start: float, end: float, step: float = 0.02) -> list[dict]:
    return [{"event": "media", "_at": t} for t in np.arange(start, end, step)]


def test_reply_after_the_turn_is_a_latency_not_a_cut_off():
    m = turn_metrics(ENTRY, _media(105.8, 107.0), start_at=100.0, window_end=200.0)
    assert not m.cut_off and m.replied
    assert m.turn_latency_ms == pytest.approx(800, abs=1)
    assert m.answer_latency_ms == pytest.approx(800, abs=1)


def test_reply_in_a_pause_is_a_cut_off_and_the_clear_is_timed_from_the_resumed_speech():
    events = _media(102.6, 103.2) + [{"event": "clear", "_at": 103.3}] + _media(105.7, 106.5)
    m = turn_metrics(ENTRY, events, start_at=100.0, window_end=200.0)
    assert m.cut_off and m.cut_off_at_s == pytest.approx(2.6)
    assert m.turn_latency_ms is None
    assert m.cleared and m.clear_latency_ms == pytest.approx(300, abs=1)   # resumed at 3.0 s
    assert m.answer_latency_ms == pytest.approx(700, abs=1)


def test_bot_talking_on_over_the_caller_is_counted():
    m = turn_metrics(ENTRY, _media(103.5, 108.0), start_at=100.0, window_end=200.0)
    assert m.cut_off and m.cleared is False and m.clear_latency_ms is None
    assert m.answer_latency_ms is None   # one burst, begun before the caller finished
    summary = summarize([m])
    assert summary["cut_offs"] == 1 and summary["talked_over"] == 1


def test_previous_reply_resuming_early_in_the_turn_is_not_a_cut_off():
    events = _media(100.7, 101.0) + _media(105.6, 106.0)     # before the first pause (2.0 s)
    m = turn_metrics(ENTRY, events, start_at=100.0, window_end=200.0)
    assert m.resumed and not m.cut_off
    assert m.turn_latency_ms == pytest.approx(600, abs=1)
    assert summarize([m])["resumed"] == 1


def test_no_reply_and_media_of_the_next_window_are_not_counted():
    m = turn_metrics(ENTRY, _media(201.0, 202.0), start_at=100.0, window_end=200.0)
    assert not m.replied and not m.cut_off and m.turn_latency_ms is None


def test_bargein_clear_is_timed_from_the_callers_onset_and_a_missing_clear_is_counted():
    assert bargein_clear_ms(ENTRY, 100.0, 100.7) == pytest.approx(200, abs=1)  # onset 100.5
    assert bargein_clear_ms(ENTRY, 100.0, None) is None
    summary = summarize_bargeins([200.0, None, 100.0])
    assert summary["bargeins"] == 3 and summary["bargeins_cleared"] == 2
    assert summary["bargein_clear_p50_ms"] == 150.0


def test_bargein_plan_pairs_a_question_with_a_longer_turn():
    manifest = [{"file": "q.wav", "kind": "question", "speech_start_s": 0.5, "speech_end_s": 1.8},
                {"file": "c.wav", "kind": "complaint", "speech_start_s": 0.5,
                 "speech_end_s": 9.0},
                {"file": "y.wav", "kind": "one_word", "speech_start_s": 0.5, "speech_end_s": 1}]
    calls = plan_bargeins(manifest, 5, seed=1, per_call=4)
    assert [len(c) for c in calls] == [4, 1]
    assert all(a["file"] == "q.wav" and b["file"] == "c.wav" for c in calls for a, b in c)


def test_report_shows_the_cost_and_the_bargein_side_by_side(tmp_path):
    m = turn_metrics(ENTRY, _media(105.8, 107.0), start_at=100.0, window_end=200.0)
    systems = {}
    for name, requests in (("appliance", 3), ("pipecat", 2)):
        summary = summarize([m, m])
        summary.update(summarize_bargeins([120.0, 180.0]))
        summary.update(gemini_requests=requests, gemini_per_confirmed_turn=requests / 2,
                       speculative_cancelled=1 if name == "appliance" else None)
        systems[name] = {"summary": summary, "turns": [m.as_dict()], "calls": [{"load_1min": 3.0}],
                         "startup_s": 1.0, "wall_s": 2.0}
    out = tmp_path / "r.md"
    write_report(out, {"turns": 2, "calls": 1, "per_call": 2, "systems": systems, "cpus": 2})
    text = out.read_text()
    assert "| Gemini requests per confirmed turn | 1.50 | 1.00 | 1.50 |" in text
    assert "| barge-in clear p95 (ms) | 177 | 177 | 1.00 |" in text
    assert "| speculative replies cancelled | 1 | - |" in text
    assert "load average" in text


def test_percentile_interpolates():
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([], 0.5) is None


def test_turn_specs_cover_the_kinds_the_issue_asks_for():
    kinds = {t.kind for t in TURNS}
    assert len(TURNS) >= 40 and len({t.name for t in TURNS}) == len(TURNS)
    assert {"phone_number", "date", "email", "address", "spelled_name", "hesitation",
            "two_part", "one_word", "question", "goodbye", "complaint"} <= kinds
    assert sum(t.noise is not None for t in TURNS) >= 3


def test_rendered_turn_has_its_pause_and_boundaries_in_the_manifest():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install -y espeak-ng)")
    try:
        synth = speech_set.Synth()
    except RealModelUnavailable as exc:
        pytest.skip(f"real Piper joe voice unavailable: {exc}")
    rng = np.random.default_rng(0)
    for voice in ("joe", "espeak:en-us+f3:150"):
        spec = TurnSpec("t", "two_part", voice, ("No, that's all.", 1.0, "Oh wait."), "Else?",
                        "pink:12")
        samples, entry = speech_set.render(spec, synth, rng)
        assert samples.dtype == np.dtype("<i2")
        assert entry["speech_start_s"] == pytest.approx(speech_set.LEAD_S, abs=0.1)
        assert entry["duration_s"] - entry["speech_end_s"] == pytest.approx(
            speech_set.TAIL_S, abs=0.15)
        longest = max(end - start for start, end in entry["pauses_s"])
        assert longest == pytest.approx(1.0, abs=0.2)
        assert entry["kind"] == "two_part" and entry["bot_question"] == "Else?"


def test_the_bot_answers_each_turn_with_the_question_the_next_turn_replies_to():
    from bench.turn_bench import CLOSING_QUESTION, bot_lines

    entries = [{"bot_question": "How can I help you today?"},
               {"bot_question": "What's the best number to reach you on?"},
               {"bot_question": None}, {}]
    assert bot_lines(entries) == ["I see. What's the best number to reach you on?",
                                  CLOSING_QUESTION, CLOSING_QUESTION, CLOSING_QUESTION]


@dataclass(frozen=True)
class _Server:
    url: str
    sign: bool = True


async def test_a_bargein_after_an_unanswered_question_is_not_counted_as_a_missed_clear(
        make_settings) -> None:
    """Through the real server: the first question is silence (the bot has nothing to answer,
    as when Whisper rejected "Do you deliver to Haifa?" in babble as no speech), so the caller's
    wait runs out and the next turn is spoken into silence: no `clear` is due. The second
    question is answered and the caller speaks over the answer: that one is timed."""
    silence, hours, long = (MANIFEST[f] for f in ("silence_5s.wav", "en_hours.wav",
                                                  "en_long.wav"))
    quiet = "[call]\nsilence_prompt_s = 60\n"       # as in the bench: no "are you there?"
    async with FakeGemini() as gemini:
        gemini.default = Reply(text=LONG_REPLY, ttft_s=0.05)
        async with running(settings_for(make_settings, gemini, quiet)) as srv:
            outcomes = await run_bargein_call(_Server(srv.url),
                                              [(silence, hours), (hours, long)], AUDIO_DIR,
                                              public_url=PUBLIC_URL, auth_token=TOKEN)
    assert outcomes[0] == UNANSWERED, outcomes
    assert isinstance(outcomes[1], float), outcomes       # the bot stopped for this one
    summary = summarize_bargeins(outcomes)
    assert (summary["bargeins"], summary["bargeins_cleared"],
            summary["bargeins_unanswered"]) == (1, 1, 1)
