"""What a partial transcript says about the caller having finished (pure, no I/O).

``text_signal(text, expect)`` looks at the END of Whisper's transcript of the turn so far and
returns a ``TextSignal``: ``unfinished`` (more is coming: hold the turn open), ``finished`` (it
reads like a complete turn: answer fast) or ``neutral`` (the text says nothing either way).
Whisper punctuates everything, so a full stop after digits ("052.") or after "at" means nothing;
only a question mark, a closing phrase, a short answer to a short question or a full sentence
count as finished.

``expect`` is what the bot's last question asks for (``expectation_of(question)``): after "What
is your phone number?" a reply with fewer than 7 digits is unfinished whatever its punctuation.
English first; Hebrew and Russian fillers, conjunctions and closings where they are cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["unfinished", "finished", "neutral"]
Expect = Literal["phone", "number", "date", "time", "name", "email", "address", "yes_no"]
Reason = Literal[
    "no_words", "digits", "trailing_punctuation", "filler", "conjunction", "dangling",
    "expects_more",  # the bot's question asked for something the reply does not have yet
    "question", "closing", "short_answer", "answered", "sentence", "number_complete", "plain",
    "bare_answer",  # "No." with no question asked: often "No, thank you..." follows
    "holding",  # "Hang on, let me check.": the caller asked the bot to wait
]


@dataclass(frozen=True)
class TextSignal:
    verdict: Verdict
    reason: Reason

    @property
    def unfinished(self) -> bool:
        return self.verdict == "unfinished"

    @property
    def finished(self) -> bool:
        return self.verdict == "finished"

    @property
    def level(self) -> Literal["strong", "weak", "neutral", "unfinished"]:
        """How far to trust it: Whisper ends mid-turn pauses with a full stop too, so a plain
        sentence ("sentence") is weak, and so is a bare "yes"/"no" that no question asked for;
        a question, a closing, or a short answer to the bot's question is strong."""
        if self.verdict == "finished":
            return "weak" if self.reason in ("sentence", "bare_answer") else "strong"
        return "unfinished" if self.verdict == "unfinished" else "neutral"


def _vocab(*lines: str) -> frozenset[str]:
    return frozenset(" ".join(lines).split())


_DIGIT_WORDS = _vocab(
    "zero oh one two three four five six seven eight nine double triple "
    "ноль один два три четыре пять шесть семь восемь девять "
    "אפס אחת אחד שתיים שתים שניים שנים שלוש שלש ארבע חמש שש שבע שמונה תשע")
_FILLERS = _vocab(
    "um umm ummm uh uhh uhm er erm ehm hmm hm mm mmm ah eh well like "
    "э эм ээ ммм ну вот это "
    "אה אמ אממ אהה כאילו רגע")
_CONJUNCTIONS = _vocab(
    "and or but so because cause plus also if when while "
    "и а но или потому что чтобы если когда "
    "ו או אבל כי אז גם אם כש")
_DANGLING = _vocab(
    "the a an to of for with at in on from by about into my your our his her their "
    "is are was were be am i'm it's "
    "в на с к по для о мой моя моё мои номер "
    "של עם את ב ל מ על שלי המספר")
_CLOSINGS = (
    "thank you", "thanks", "thanks a lot", "bye", "goodbye", "bye bye", "bye now",
    "bye for now", "that's all",
    "that's it", "that is all", "nothing else", "no thanks", "no thank you", "have a nice day",
    "спасибо", "до свидания", "пока", "это всё", "это все",
    "תודה", "תודה רבה", "להתראות", "ביי", "זהו",
)
# The caller asks for a moment: whatever the punctuation, the answer is still to come.
_HOLDING = (
    "hang on", "hold on", "one moment", "one second", "one sec", "just a moment",
    "just a second", "just a sec", "a moment", "a second", "let me check", "let me see",
    "let me think", "let me look", "let me find it", "give me a second", "give me a moment",
    "wait", "минутку", "секунду", "подождите", "сейчас посмотрю", "רגע", "שנייה", "רק רגע",
    # ... or announces that more is coming: "Oh wait, one more thing."
    "one more thing", "one more question", "another thing", "another question",
    "one last thing", "one last question", "and also", "ещё одно", "еще одно", "עוד משהו",
    "עוד שאלה",
)
_SHORT_ANSWERS = _vocab(
    "yes yeah yep yup no nope sure ok okay correct right exactly fine great perfect please "
    "да нет конечно хорошо ладно כן לא בטח בסדר נכון")
_WEEKDAYS_MONTHS = re.compile(
    r"\b(today|tomorrow|tonight|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"next week|this week|morning|afternoon|evening|noon|o'clock|am|pm|\d)\b")
_WORD = re.compile(r"[\w'’@+]+(?:[.\-][\w'’@+]+)*", re.UNICODE)
_NUMBER = re.compile(r"^\+?\d[\d\-.]*$")  # Whisper writes "zero five four" as "0.54"
_TRAILING_QUOTES = " \t\r\n\"'”“»«)]"
_YES_NO_START = re.compile(
    r"^(do|does|did|is|are|was|were|can|could|would|will|shall|should|have|has|may|"
    r"is that|would you)\b")


def _words(text: str) -> list[str]:
    return [w.replace("’", "'") for w in _WORD.findall(text.lower())]


def _is_number(word: str) -> bool:
    return word in _DIGIT_WORDS or bool(_NUMBER.match(word))


def _digit_count(word: str) -> int:
    return sum(ch.isdigit() for ch in word) if _NUMBER.match(word) else int(word in _DIGIT_WORDS)


def trailing_digits(words: list[str]) -> int:
    """Digits in the run of number words/groups at the end of ``words`` (0 if none)."""
    count = 0
    for word in reversed(words):
        if not _is_number(word):
            break
        count += _digit_count(word)
    return count


def _reads_out_digits(words: list[str]) -> bool:
    """A number being read out: a group of 3+ digits, a run of 2+ numbers, or a lone zero."""
    if not words or not _is_number(words[-1]):
        return False
    last = words[-1]
    return (_digit_count(last) >= 3 or last in ("zero", "oh", "0", "ноль", "אפס")
            or (len(words) >= 2 and _is_number(words[-2])))


def text_signal(text: str, expect: Expect | None = None) -> TextSignal:
    """How the transcript of the turn so far ends (see the module docstring)."""
    stripped = text.strip(_TRAILING_QUOTES).lower()
    words = _words(stripped)
    if not words:
        return TextSignal("unfinished", "no_words")  # speech Whisper dropped: "um", a breath
    wanted = _expected_missing(words, stripped, expect)
    if wanted is not None:
        return wanted
    if _reads_out_digits(words):
        if trailing_digits(words) >= 10:
            return TextSignal("neutral", "number_complete")
        return TextSignal("unfinished", "digits")
    if stripped.endswith(("...", "…", ",", "-", "–", "—", ":", ";")):
        return TextSignal("unfinished", "trailing_punctuation")
    bare = " ".join(words)
    if any(bare == h or bare.endswith(" " + h) for h in _HOLDING):
        return TextSignal("unfinished", "holding")
    last = words[-1]
    for vocabulary, reason in ((_FILLERS, "filler"), (_CONJUNCTIONS, "conjunction"),
                               (_DANGLING, "dangling")):
        if last in vocabulary and not _idiom(words, stripped):
            return TextSignal("unfinished", reason)
    return _finished_or_neutral(words, stripped, expect)


def _idiom(words: list[str], stripped: str) -> bool:
    """Endings that look dangling but are complete: "I think so.", "... is it?"."""
    if stripped.endswith(("?", "？")) and words[-1] not in _FILLERS:
        return True
    return words[-1] == "so" and len(words) >= 2 and words[-2] in ("think", "hope", "guess")


def _finished_or_neutral(words: list[str], stripped: str, expect: Expect | None) -> TextSignal:
    if stripped.endswith(("?", "？")):
        return TextSignal("finished", "question")
    bare = " ".join(words)
    if any(bare == c or bare.endswith(" " + c) for c in _CLOSINGS):
        return TextSignal("finished", "closing")
    if words[0] in _SHORT_ANSWERS and len(words) <= 3:
        return TextSignal("finished", "short_answer" if expect else "bare_answer")
    if expect is not None and len(words) <= 6:
        return TextSignal("finished", "answered")  # _expected_missing found nothing missing
    if stripped.endswith((".", "!", "。")) and len(words) >= 3:
        return TextSignal("finished", "sentence")
    return TextSignal("neutral", "plain")


def _expected_missing(words: list[str], stripped: str, expect: Expect | None,
                      ) -> TextSignal | None:
    """``unfinished/expects_more`` when the reply lacks what the question asked for, or a
    verdict the expectation settles; None to go on with the general rules."""
    more = TextSignal("unfinished", "expects_more")
    if expect == "phone":
        digits = sum(_digit_count(w) for w in words)
        if digits < 7 and not _declines(words):
            return more
        if digits >= 10 and _is_number(words[-1]):
            return TextSignal("finished", "number_complete")
    elif expect == "email":
        if "@" not in stripped and not ("at" in words and "dot" in words) and not _declines(words):
            return more
    elif expect in ("date", "time"):
        if not _WEEKDAYS_MONTHS.search(stripped) and not _declines(words):
            return more if len(words) <= 2 and words[-1] not in _SHORT_ANSWERS else None
    elif expect == "address" and not any(ch.isdigit() for ch in stripped) and len(words) < 3:
        return more
    return None


def _declines(words: list[str]) -> bool:
    """"No", "I don't have one", "why?": the caller is not going to give it."""
    return words[0] in ("no", "nope", "нет", "לא") or "don't" in words or "not" in words


_EXPECT_PATTERNS: tuple[tuple[Expect, re.Pattern[str]], ...] = (
    ("phone", re.compile(r"\b(phone|mobile|cell|number (to|we can)|call you (back )?on)\b")),
    ("email", re.compile(r"\be-?mail\b")),
    ("address", re.compile(r"\b(address|where do you live|street)\b")),
    ("time", re.compile(r"\b(what time|which time|at what time|time suits)\b")),
    ("date", re.compile(r"\b(what day|which day|what date|which date|when would|when do|when)\b")),
    ("name", re.compile(r"\b(your name|name please|who am i speaking|under what name)\b")),
    ("number", re.compile(r"\b(how many|how much|number of|booking number|reference)\b")),
)


def expectation_of(question: str | None) -> Expect | None:
    """What the bot's last utterance asks the caller for, if it asks a question."""
    if not question or "?" not in question:
        return None
    asked = question.lower().rsplit(".", 1)[-1].strip()  # the last sentence is the question
    for expect, pattern in _EXPECT_PATTERNS:
        if pattern.search(asked):
            return expect
    if _YES_NO_START.match(asked):
        return "yes_no"
    return None


def normalise(text: str) -> str:
    """Lower-case words without punctuation or leading/trailing fillers: two transcripts that
    normalise equal would get the same reply ("Yes." == "yes", "um, book a table" == "book a
    table")."""
    words = _words(text)
    while words and words[0] in _FILLERS:
        words.pop(0)
    while words and words[-1] in _FILLERS:
        words.pop()
    return " ".join(w.strip("'") for w in words)
