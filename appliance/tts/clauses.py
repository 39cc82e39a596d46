"""Cut streamed LLM text into speakable pieces, as early as it is safe to. Pure: no I/O, no clock.

The caller should hear something fast, so the FIRST piece ends at the first clause boundary
(comma, semicolon, colon, dash) once it holds ``first_min_words`` words, or at a sentence end,
whichever comes first. Later pieces end at sentence ends only (one Piper chunk each, with
natural prosody), and any piece is cut at a word boundary once it grows past a length limit.

A boundary is only taken once the character AFTER the punctuation has arrived and is white
space, so "3.5", "12:30", "₪1,200", "example.com" and "e.g." split over several deltas are
never cut. Titles ("Dr.", "Mr.") are never sentence ends; dotted abbreviations ("a.m.",
"etc.", "т.д.") end a sentence only if the next word starts with a capital letter.

``speakable()`` removes what should not be read aloud: markdown emphasis, headings, bullets,
code ticks, link targets, emojis.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["ClauseSplitter", "speakable"]

SENTENCE_END = frozenset(".!?…。！？؟։׃।")
CLAUSE_END = frozenset(",;:，；：、")
DASHES = frozenset("-–—")
# May sit between the punctuation and the white space: closing quotes/brackets, emphasis.
CLOSERS = frozenset("\"'”’»)]}*_")

# Never a sentence end: a name or a number follows.
TITLES = frozenset({
    "dr", "mr", "mrs", "ms", "prof", "st", "sr", "jr", "mt", "vs", "no", "nr", "tel", "ph",
    "approx", "dept", "ext", "apt", "fig", "min", "max",
    "г", "гг", "ул", "д", "кв", "тел", "руб", "коп", "им", "проф", "см", "стр", "т",
})
# A sentence end only when the next word is capitalised ("We open at 9 a.m. See you!").
AMBIGUOUS = frozenset({
    "etc", "a.m", "p.m", "e.g", "i.e", "inc", "ltd", "co", "corp", "jan", "feb", "mar",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed",
    "thu", "fri", "sat", "sun", "hrs", "т.д", "т.п", "т.е", "др", "пр",
})
_DOTTED = re.compile(r"^(?:\w\.)+\w$")  # u.s / e.g / a.m written without the final dot


class ClauseSplitter:
    """Feed LLM text deltas; get back pieces ready for text-to-speech.

    Not thread-safe; one instance per reply. ``feed`` and ``flush`` return pieces already
    passed through ``speakable`` (empty ones are dropped).
    """

    def __init__(self, *, first_min_words: int = 3, first_max_chars: int = 100,
                 max_chars: int = 220) -> None:
        if first_min_words < 1 or first_max_chars < 20 or max_chars < first_max_chars:
            raise ValueError("need first_min_words >= 1 and 20 <= first_max_chars <= max_chars")
        self._first_min_words = first_min_words
        self._first_max_chars = first_max_chars
        self._max_chars = max_chars
        self._buf = ""
        self._emitted = 0  # speakable pieces returned so far

    @property
    def pending(self) -> str:
        """Text received but not yet returned (raw, before ``speakable``)."""
        return self._buf

    def feed(self, delta: str) -> list[str]:
        """Add a delta; return the pieces that became complete (often none)."""
        self._buf = (self._buf + delta).lstrip()
        pieces: list[str] = []
        while True:
            first = self._emitted == 0 and not pieces
            limit = self._first_max_chars if first else self._max_chars
            cut = _find_cut(self._buf, first, self._first_min_words)
            if cut is None or cut > limit:  # (the same cuts however the text was chunked)
                if len(self._buf) <= limit:
                    break
                cut = _fallback_cut(self._buf, limit)
                if cut is None:
                    break
            piece = speakable(self._buf[:cut])
            self._buf = self._buf[cut:].lstrip()
            if piece:
                pieces.append(piece)
        self._emitted += len(pieces)
        return pieces

    def cut_first_piece(self, min_words: int) -> list[str]:
        """The model is slow: end the first piece now, at the last word that has fully arrived
        (never after a dangling "the", "and", "to" ...), if it holds at least ``min_words``
        words. Later pieces are never cut this way. Returns [] when there is nothing to cut."""
        if self._emitted:
            return []
        cut = _word_cut(self._buf, min_words)
        if cut is None:
            return []
        piece = speakable(self._buf[:cut])
        self._buf = self._buf[cut:].lstrip()
        if not piece:
            return []
        self._emitted += 1
        return [piece]

    def flush(self) -> list[str]:
        """End of the reply: return the rest (at most one piece)."""
        piece = speakable(self._buf)
        self._buf = ""
        if not piece:
            return []
        self._emitted += 1
        return [piece]


def _find_cut(buf: str, first: bool, min_words: int) -> int | None:
    """End index of the first complete piece in ``buf``, or None if none is certain yet."""
    n = len(buf)
    for i, ch in enumerate(buf):
        if ch == "\n":
            if buf[:i].strip():
                return i
            continue
        sentence = ch in SENTENCE_END
        clause = first and (ch in CLAUSE_END or ch in DASHES)
        if not (sentence or clause):
            continue
        j = i + 1
        while j < n and (buf[j] in CLOSERS or buf[j] in SENTENCE_END):
            j += 1  # "?!", "...", '."' and ".**" stay with the sentence
        if j == n:
            return None  # the next character decides; wait for it
        if ch == "—" and clause and buf[i - 1 : i].isalpha() and buf[j].isalpha():
            pass  # "word—word": an em dash without spaces is still a pause
        elif not buf[j].isspace():
            continue  # 3.5, 12:30, 1,200, e.g., example.com, well-known
        if ch in DASHES and not (i > 0 and buf[i - 1].isspace()) and ch != "—":
            continue  # "5- 6" or a hyphenated line break, not a spoken dash
        if sentence and ch == ".":
            verdict = _period_verdict(buf, i, j)
            if verdict is None:
                return None
            if not verdict:
                continue
        if not sentence and _word_count(buf[:i]) < min_words:
            continue
        if not buf[:i].strip(" \t*_#>-•"):
            continue  # nothing speakable before it (a bullet, a lone dash)
        return j
    return None


def _period_verdict(buf: str, i: int, j: int) -> bool | None:
    """Is the '.' at ``i`` (white space at ``j``) a sentence end? None = need the next word."""
    start = i
    while start > 0 and not buf[start - 1].isspace():
        start -= 1
    token = buf[start:i].lstrip("\"'“‘«([{*_").lower()
    if not token:
        return True
    if token.isdigit() and (start == 0 or buf[start - 1] == "\n") and len(token) <= 2:
        return False  # "1. " opening a numbered list line
    if token in TITLES or (len(token) == 1 and buf[i - 1].isupper()):
        return False  # "Dr. Cohen", "J. Smith", "г. Москва"
    if token in AMBIGUOUS or _DOTTED.match(token):
        k = j
        while k < len(buf) and buf[k].isspace():
            k += 1
        if k == len(buf):
            return None
        return buf[k].isupper() or not buf[k].isalnum() and buf[k] not in "₪$€£"
    return True


def _word_count(text: str) -> int:
    return sum(1 for w in text.split() if any(c.isalnum() for c in w))


# Words a spoken piece should not end on: the next word belongs to them.
_DANGLING = frozenset({
    "a", "an", "the", "and", "or", "but", "to", "of", "for", "from", "in", "on", "at", "by",
    "with", "is", "are", "our", "your", "my", "we", "i", "you", "it", "that", "this", "be",
    "и", "в", "на", "с", "к", "по", "для", "или", "а", "но", "у", "о",
})


def _word_cut(buf: str, min_words: int) -> int | None:
    """End of the last complete word of ``buf`` (one followed by white space) that leaves at
    least ``min_words`` words and does not end on a dangling word; None if there is none."""
    ends = [m.start() for m in re.finditer(r"(?<=\S)\s", buf)]
    for end in reversed(ends):
        words = buf[:end].split()
        if len(words) < min_words:
            return None
        last = words[-1].strip("\"'“”‘’«»()[]*_").lower()
        if last and last not in _DANGLING and last[-1] not in "-–—":
            return end
    return None


def _fallback_cut(buf: str, limit: int) -> int | None:
    """Cut an over-long piece: at its last clause boundary, else at its last word boundary."""
    head = buf[: limit + 1]
    best = None
    for m in re.finditer(r"[,;:，；：]['\"”’)]*\s|\s[–—-]\s", head):
        if _word_count(head[: m.start()]) >= 2:
            best = m.end()
    if best is None:
        space = max(head.rfind(" "), head.rfind("\t"))
        if space > 0:
            best = space
    if best is None:  # one giant token (a URL?): cut at the first space after it
        m = re.search(r"\s", buf)
        best = m.start() if m else None
    return best


# ----------------------------------------------------------------------------------------------
# Speakable text

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HEADING = re.compile(r"(?m)^[ \t]*#{1,6}[ \t]*")
_BULLET = re.compile(r"(?m)^[ \t]*(?:[-*+•·▪●◦‣]|\d{1,2}[.)])[ \t]+")
_QUOTE = re.compile(r"(?m)^[ \t]*>[ \t]?")
_RULE = re.compile(r"(?m)^[ \t]*(?:[-*_=][ \t]*){3,}$")
_UNDERSCORE = re.compile(r"(?<!\w)_+|_+(?!\w)")
_SPACES = re.compile(r" {2,}")
_TRAILING_DASH = re.compile(r"[\s–—-]+$")
_DROP = ("Cc", "Cf", "Cs", "Co")  # controls, format characters (ZWJ...), surrogates, private use
_SPACE_BEFORE_PUNCT = re.compile(r" +([,.;:!?…])")
_EMOJI_RANGES = (
    (0x1F000, 0x1FAFF),  # emoticons, pictographs, transport, flags, supplemental symbols
    (0x2600, 0x27BF),    # miscellaneous symbols, dingbats (☀ ✓ ✔ ❤)
    (0x2B00, 0x2BFF),    # arrows and stars (⭐)
    (0x2190, 0x21FF),    # arrows
    (0x25A0, 0x25FF),    # geometric shapes
    (0xE0000, 0xE007F),  # tag characters (flag sequences)
)


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    if ch in "\u200d\ufe0e\ufe0f\u20e3":  # joiner, variation selectors, keycap
        return True
    return any(lo <= cp <= hi for lo, hi in _EMOJI_RANGES)


def speakable(text: str) -> str:
    """``text`` without markup that a voice would read out; white space collapsed."""
    text = _LINK.sub(r"\1", text)
    text = _RULE.sub("", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub("", text)
    text = text.replace("`", "").replace("*", "").replace("~~", "")
    text = _UNDERSCORE.sub("", text)
    text = "".join(" " if ch.isspace() else ch for ch in text
                   if ch.isspace() or not (_is_emoji(ch) or unicodedata.category(ch) in _DROP))
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    return _TRAILING_DASH.sub("", text).strip()
