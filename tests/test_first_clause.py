"""SpokenClauses: the splitter's first-clause rule plus the slow-model rule (tts/first_clause.py)."""

from __future__ import annotations

from appliance.tts.clauses import ClauseSplitter
from appliance.tts.first_clause import SpokenClauses


def stream(text: str, seconds_per_word: float, clauses: SpokenClauses) -> list[tuple[float, str]]:
    """Feed `text` a word at a time, as a model decoding at that rate; (time, piece) pairs."""
    out: list[tuple[float, str]] = []
    for i, word in enumerate(text.split(" ")):
        at = i * seconds_per_word
        out += [(at, p) for p in clauses.feed(word if i == 0 else " " + word, at)]
    out += [(-1.0, p) for p in clauses.flush()]
    return out


SENTENCE = "We are open from nine in the morning to six in the evening on weekdays. Anything else?"


def test_a_fast_model_keeps_the_first_sentence_whole() -> None:
    pieces = stream(SENTENCE, 0.005, SpokenClauses())
    assert [p for _, p in pieces] == [
        "We are open from nine in the morning to six in the evening on weekdays.", "Anything else?"]


def test_a_slow_model_speaks_the_words_it_has_after_the_wait() -> None:
    pieces = stream(SENTENCE, 0.06, SpokenClauses(slow_after_s=0.25))
    first_at, first = pieces[0]
    assert 0.25 <= first_at < 0.35
    assert first == "We are open from nine"          # not "... nine in": never a dangling word
    assert "".join(p for _, p in pieces).replace(" ", "") == SENTENCE.replace(" ", "")
    assert pieces[1][1] == "in the morning to six in the evening on weekdays."


def test_the_slow_rule_off_waits_for_punctuation() -> None:
    pieces = stream(SENTENCE, 0.06, SpokenClauses(slow_after_s=None))
    assert pieces[0][1].endswith("weekdays.")


def test_a_comma_still_ends_the_first_piece_first() -> None:
    pieces = stream("Of course, I can book that for you.", 0.06, SpokenClauses())
    assert pieces[0] == (0.12, "Of course,")        # once the space after the comma came


def test_too_few_words_wait_for_more() -> None:
    clauses = SpokenClauses(slow_after_s=0.25, slow_min_words=3)
    assert clauses.feed("Yes, we", 0.0) == []
    assert clauses.feed(" can", 0.3) == []              # "Yes, we" + "can" still arriving
    assert clauses.feed(" come tomorrow", 0.35) == ["Yes, we can come"]


def test_only_the_first_piece_is_cut_at_words() -> None:
    splitter = ClauseSplitter(first_min_words=1)
    assert splitter.feed("Sure, we are open ") == ["Sure,"]
    assert splitter.cut_first_piece(2) == []
    assert splitter.flush() == ["we are open"]


def test_the_cut_never_splits_a_word_that_is_still_arriving() -> None:
    splitter = ClauseSplitter()
    splitter.feed("Our technician can come tomor")
    assert splitter.cut_first_piece(3) == ["Our technician can come"]
    assert splitter.feed("row morning. ") == ["tomorrow morning."]
