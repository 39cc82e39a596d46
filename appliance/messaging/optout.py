"""Opt-out (STOP) and opt-in (START) words. Pure.

A message is a consent keyword only when the keyword is the whole message (case, spaces,
punctuation and a polite "please" aside), as carriers and Twilio match them: "stop" opts out,
"stop sending me the offer" does not.

SMS uses Twilio's standard lists (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE,
OPTOUT / START, UNSTOP, YES), because Twilio applies them to SMS anyway: after "cancel" Twilio
itself refuses to deliver our messages (error 21610) until the customer sends START. WhatsApp
has no such filter, and a receptionist hears "cancel" or "end" as an answer about an
appointment, so WhatsApp only takes the unambiguous words. Both take the Hebrew and Russian
equivalents (Israeli law names "הסר" as the removal word).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

Action = Literal["opt_out", "opt_in"]

_UNAMBIGUOUS_OUT = frozenset({
    "stop", "stopall", "stop all", "unsubscribe", "optout", "opt out", "opt-out",
    "הסר", "הסרה", "הסירו", "הסירו אותי", "להסיר", "הסר אותי",
    "стоп", "отписаться", "отписка", "отпишите", "отпишите меня",
})
_SMS_ONLY_OUT = frozenset({"cancel", "end", "quit", "revoke"})
_UNAMBIGUOUS_IN = frozenset({
    "start", "unstop", "subscribe", "התחל", "הרשמה", "старт", "подписаться",
})
_SMS_ONLY_IN = frozenset({"yes"})
_POLITE = frozenset({"please", "pls", "plz", "now", "me", "בבקשה", "пожалуйста"})


@dataclass(frozen=True)
class ConsentWord:
    action: Action
    keyword: str   # the normalised keyword matched, e.g. "stop"


def normalise(body: str) -> str:
    """Case folded, letters/digits/inner hyphens and single spaces only."""
    text = unicodedata.normalize("NFKC", body).casefold()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in "LN" or ch == "-":
            kept.append(ch)
        elif cat[0] == "M":
            continue  # niqqud, combining accents
        else:
            kept.append(" ")
    words = [w.strip("-") for w in "".join(kept).split()]
    return " ".join(w for w in words if w)


def classify(body: str, channel: str) -> ConsentWord | None:
    """The consent keyword ``body`` is, on ``channel`` ("sms" or "whatsapp"), or None."""
    text = normalise(body)
    if not text or len(text) > 40:
        return None
    words = [w for w in text.split() if w not in _POLITE] or text.split()
    core = " ".join(words)
    out_words = _UNAMBIGUOUS_OUT | (_SMS_ONLY_OUT if channel == "sms" else frozenset())
    in_words = _UNAMBIGUOUS_IN | (_SMS_ONLY_IN if channel == "sms" else frozenset())
    for candidate in (text, core):
        if candidate in out_words:
            return ConsentWord("opt_out", candidate)
        if candidate in in_words:
            return ConsentWord("opt_in", candidate)
    return None
