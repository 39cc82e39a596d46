"""Transcript signals: what the end of a partial transcript says about the turn being over."""

import pytest

from appliance.turns.text import TextSignal, expectation_of, normalise, text_signal


@pytest.mark.parametrize("text, reason", [
    ("My number is 052.", "digits"),  # Whisper's full stop after a digit group means nothing
    ("052 881", "digits"),
    ("zero five two", "digits"),
    ("It's 052-881.", "digits"),
    ("Um,", "trailing_punctuation"),
    ("I'd like to book...", "trailing_punctuation"),
    ("um", "filler"),
    ("Hmm.", "filler"),
    ("Ну", "filler"),
    ("אממ", "filler"),
    ("I want to book and", "conjunction"),
    ("Sorry, but.", "conjunction"),
    ("because", "conjunction"),
    ("on the", "dangling"),
    ("I'll be there at.", "dangling"),
    ("My number is", "dangling"),
    ("I was born on the 5th of", "dangling"),
    ("", "no_words"),
    ("...", "no_words"),
    ("Hang on, let me check.", "holding"),
    ("Sure, one moment.", "holding"),
    ("Hold on.", "holding"),
    ("Oh wait, one more thing.", "holding"),  # more is announced
    ("And another question.", "holding"),
])
def test_unfinished(text, reason):
    assert text_signal(text) == TextSignal("unfinished", reason)


@pytest.mark.parametrize("text, reason", [
    ("What are your opening hours on Friday?", "question"),
    ("Can I speak to a real person, please?", "question"),
    ("Is it?", "question"),
    ("Thanks, bye.", "closing"),
    ("Lovely, bye now.", "closing"),
    ("No, that's all", "closing"),
    ("Спасибо", "closing"),
    ("תודה רבה", "closing"),
    ("Yes.", "bare_answer"),
    ("no", "bare_answer"),
    ("Hello, I would like to book an appointment for tomorrow morning.", "sentence"),
    ("I think so.", "sentence"),
])
def test_finished(text, reason):
    assert text_signal(text) == TextSignal("finished", reason)


@pytest.mark.parametrize("text, reason", [
    ("Hello.", "plain"),  # one word and a full stop: not enough to call it finished
    ("I would like to book", "plain"),
    ("My number is 052 881 3344.", "number_complete"),  # ten digits: a whole number
    ("For 2 people", "plain"),  # a small number is not a number being read out
])
def test_neutral(text, reason):
    assert text_signal(text) == TextSignal("neutral", reason)


@pytest.mark.parametrize("text, expect, verdict, reason", [
    ("052", "phone", "unfinished", "expects_more"),
    ("It's 052 881.", "phone", "unfinished", "expects_more"),  # 6 digits: still reading
    ("052 881 3344", "phone", "finished", "number_complete"),
    ("0528813344.", "phone", "finished", "number_complete"),
    ("I don't have one.", "phone", "finished", "answered"),
    ("john", "email", "unfinished", "expects_more"),
    ("john at gmail dot com", "email", "finished", "answered"),
    ("john@example.com.", "email", "finished", "answered"),
    ("Tomorrow at ten.", "date", "finished", "answered"),
    ("Tomorrow at", "date", "unfinished", "dangling"),
    ("Next", "date", "unfinished", "expects_more"),
    ("Yes.", "yes_no", "finished", "short_answer"),
    ("Yes, but", "yes_no", "unfinished", "conjunction"),
    ("Four.", "number", "finished", "answered"),
    ("My name is", "name", "unfinished", "dangling"),
    ("Dana Cohen.", "name", "finished", "answered"),
    ("Main", "address", "unfinished", "expects_more"),
])
def test_with_the_bots_question(text, expect, verdict, reason):
    assert text_signal(text, expect) == TextSignal(verdict, reason)


@pytest.mark.parametrize("question, expect", [
    ("What is your phone number?", "phone"),
    ("Great. And what's the best number to reach you on?", "phone"),
    ("Could I have your email address?", "email"),
    ("Which day suits you?", "date"),
    ("What time would you like?", "time"),
    ("Can I have your name, please?", "name"),
    ("How many people?", "number"),
    ("Would you like me to book it?", "yes_no"),
    ("I booked it. Anything else?", None),
    ("Thanks, I've booked that.", None),
    (None, None),
])
def test_expectation_of(question, expect):
    assert expectation_of(question) == expect


def test_normalise_ignores_case_punctuation_and_edge_fillers():
    assert normalise("Um, book a table.") == normalise("book a table") == "book a table"
    assert normalise("Yes.") == "yes"
    assert normalise("052 881") != normalise("052 881 3344")
    assert normalise("uh") == ""


def test_level_separates_strong_from_a_plain_sentence():
    assert text_signal("Thanks, bye.").level == "strong"
    assert text_signal("I'd like to book a table for two.").level == "weak"
    assert text_signal("No.").level == "weak"
    assert text_signal("No.", "yes_no").level == "strong"
    assert text_signal("Hello.").level == "neutral"
    assert text_signal("and").level == "unfinished"
