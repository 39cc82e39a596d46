"""What a Twilio `From` value says about the caller: a real number, or a withheld one.

A caller who withholds their number still reaches us with a `From`: Twilio and the carriers put
a fixed placeholder there - a word ("anonymous", "restricted", "unknown", "private", "") or the
word spelled on a phone keypad ("ANONYMOUS" = +266696687, "RESTRICTED" = +7378742833,
"UNAVAILABLE" = +86282452253, "UNKNOWN" = +8656696 ...). The spelled ones pass an E.164 check,
so without this every anonymous caller would share one customer record (and its history and
appointments). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
ANONYMOUS_WORDS = ("anonymous", "restricted", "unknown", "private", "unavailable", "blocked",
                   "withheld", "unidentified", "none", "null", "client")
_KEYPAD = {c: str(d) for d, letters in ((2, "abc"), (3, "def"), (4, "ghi"), (5, "jkl"),
                                        (6, "mno"), (7, "pqrs"), (8, "tuv"), (9, "wxyz"))
           for c in letters}


def keypad(word: str) -> str:
    """"anonymous" -> "266696687": the digits that spell `word` on a phone keypad."""
    return "".join(_KEYPAD[c] for c in word.lower())


# Placeholder numbers as Twilio delivers them (with and without the "+"), plus the ones seen
# with a leading country code 1 from North American carriers.
PLACEHOLDER_DIGITS = frozenset(
    {keypad(w) for w in ANONYMOUS_WORDS if w not in ("none", "null", "client")}
    | {"1" + keypad(w) for w in ("anonymous", "restricted", "unavailable", "unknown",
                                 "private", "blocked")}
    | {"0", "00", "000", "0000000000", "1234567890"})


@dataclass(frozen=True)
class CallerId:
    number: str | None      # E.164 when the caller's number is known, else None
    raw: str                # the From value as received (for logs: mask it)

    @property
    def anonymous(self) -> bool:
        return self.number is None


def _strip(value: str) -> str:
    text = value.strip()
    for prefix in ("whatsapp:", "sms:", "tel:", "sip:", "client:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    text = text.split("@", 1)[0]                     # sip:anonymous@host
    return re.sub(r"[\s\-().]", "", text)


def classify(from_value: str | None) -> CallerId:
    """A caller ID for this `From`; `.anonymous` for every withheld or unusable value."""
    raw = from_value or ""
    value = _strip(raw)
    if value.startswith("00"):
        value = "+" + value[2:]
    if not value or value.lower() in ANONYMOUS_WORDS:
        return CallerId(None, raw)
    digits = value.lstrip("+")
    if digits in PLACEHOLDER_DIGITS or not E164.match("+" + digits) or not value.startswith("+"):
        return CallerId(None, raw)
    return CallerId("+" + digits, raw)
