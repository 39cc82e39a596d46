"""What the model wrote -> what each messaging channel gets. Pure: strings in, strings out.

The model writes loose Markdown (``**bold**``, ``*italic*``, ``# headings``, ``- lists``,
``[links](url)``, the odd ``<b>`` tag). WhatsApp has its own light markup (``*bold*``,
``_italic_``, ``~strike~``, ``- `` lists), so Markdown is converted to it. SMS shows no
markup at all, so it gets plain text, kept short and cut into messages at sensible places.

SMS cost: a message is sent in segments. GSM-7 text (the Latin alphabet, digits, common
punctuation) takes 160 characters in one segment or 153 per segment when concatenated; any
other character (Hebrew, Cyrillic, emoji, curly quotes) switches the whole message to UCS-2:
70 UTF-16 units in one segment, 67 per segment when concatenated. So plain text replaces curly
quotes, dashes and ellipses with their GSM-7 twins and drops emoji: one stray "’" would
otherwise more than double the cost of an English reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# Twilio accepts a Body of up to 1600 characters (SMS and WhatsApp).
TWILIO_BODY_LIMIT = 1600
WHATSAPP_MAX_PARTS = 3          # one reply never becomes more WhatsApp messages than this
# Twilio's deliverability advice: keep one SMS to about 320 characters (2 GSM-7 segments).
SMS_SEGMENTS_PER_MESSAGE = 2
# A reply is cut after this many SMS messages ("kept short"); the last one ends with "...".
SMS_MAX_MESSAGES = 4

# GSM 03.38 default alphabet (one septet each) and its extension table (escape + char: two).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

# Typographic characters the model likes -> their GSM-7 equivalents.
_GSM_LOOKALIKES = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u2022": "-", "\u00b7": "-",
    "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u2009": " ", "\u200a": " ",
    "\u2026": "...",
})
# Pictographs, dingbats, flags, variation selectors, ZWJ, skin tones, keycap.
_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\U00002600-\U000027BF\U0001F1E6-\U0001F1FF"
    "\U0000FE00-\U0000FE0F\U0000200D\U000020E3\U00002B00-\U00002BFF\U0001F900-\U0001F9FF]"
)

_FENCE = re.compile(r"^\s*```[\w+-]*\s*$", re.MULTILINE)
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_BULLET = re.compile(r"^([ \t]*)[*+\u2022][ \t]+", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*([-*_])([ \t]*\1){2,}[ \t]*$", re.MULTILINE)
_QUOTE = re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE)
_LINK = re.compile(r"\[([^\]\n]+)\]\((\S+?)\)")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\((\S+?)\)")
_BOLD_ITALIC = re.compile(r"(\*\*\*|___)(?=\S)(.+?)(?<=\S)\1", re.DOTALL)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.DOTALL)
_STAR_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![*\w])")
_UNDERSCORE_ITALIC = re.compile(r"(?<![_\w])_(?=[^\s_])([^_\n]+?)(?<=[^\s_])_(?![_\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_HTML_PAIR = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic",
              "s": "strike", "del": "strike", "strike": "strike"}
_HTML_TAG = re.compile(r"<(/?)(b|strong|i|em|s|del|strike|u|p|br|span|div)\b[^>]*>",
                       re.IGNORECASE)
# Placeholders (private-use characters) so one conversion is not undone by the next.
_B, _I, _S = "\ue000", "\ue001", "\ue002"


def _common(text: str) -> str:
    """Markdown structure both channels share: links, images, headings marked, rules, tags."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _IMAGE.sub(lambda m: m.group(2) if not m.group(1) else f"{m.group(1)}: {m.group(2)}",
                      text)
    text = _LINK.sub(lambda m: m.group(2) if m.group(1).strip() == m.group(2).strip()
                     else f"{m.group(1)}: {m.group(2)}", text)

    def tag(m: re.Match[str]) -> str:
        closing, name = m.group(1), m.group(2).lower()
        if name in ("br", "p", "div"):
            return "\n" if name == "br" or closing else ""
        kind = _HTML_PAIR.get(name)
        return {"bold": _B, "italic": _I, "strike": _S}.get(kind or "", "")

    text = _HTML_TAG.sub(tag, text)
    text = _RULE.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub(lambda m: m.group(1) + "- ", text)
    text = _BOLD_ITALIC.sub(lambda m: f"{_B}{_I}{m.group(2)}{_I}{_B}", text)
    text = _BOLD.sub(lambda m: f"{_B}{m.group(2)}{_B}", text)
    text = _HEADING.sub(lambda m: f"{_B}{m.group(1).strip(_B)}{_B}", text)
    text = _STRIKE.sub(lambda m: f"{_S}{m.group(1)}{_S}", text)
    text = _STAR_ITALIC.sub(lambda m: f"{_I}{m.group(1)}{_I}", text)
    text = _UNDERSCORE_ITALIC.sub(lambda m: f"{_I}{m.group(1)}{_I}", text)
    return text


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def whatsapp_text(text: str) -> str:
    """Markdown -> WhatsApp markup: *bold*, _italic_, ~strike~, "- " lists, ```code```."""
    text = _common(text)
    text = text.replace(_B * 2, "")  # an empty bold pair
    text = text.replace(_B, "*").replace(_I, "_").replace(_S, "~")
    return _tidy(text)


def sms_text(text: str) -> str:
    """Markdown -> plain text for SMS: no markup, GSM-7 punctuation, no emoji."""
    text = _FENCE.sub("", text)
    text = _common(text)
    text = _INLINE_CODE.sub(lambda m: m.group(1), text)
    text = text.replace(_B, "").replace(_I, "").replace(_S, "")
    text = text.translate(_GSM_LOOKALIKES)
    text = _EMOJI.sub("", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"(?<=\S)[ \t]+(?=[.,!?;:](?:\s|$))", "", text)  # "May 😊." -> "May."
    return _tidy(text)


# ----------------------------------------------------------------------------------------------
# SMS segments


@dataclass(frozen=True)
class SmsCost:
    """What one SMS body costs: its encoding, length in encoding units, and segments."""

    encoding: Encoding
    units: int      # GSM-7 septets (extension characters count 2) or UTF-16 code units
    segments: int


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text)


def sms_cost(text: str) -> SmsCost:
    """Segments as a handset counts them. Concatenated segments carry a 6-byte header, so
    153 septets / 67 UTF-16 units each; an escape pair or a surrogate pair is never split."""
    if is_gsm7(text):
        widths = [2 if ch in GSM7_EXTENDED else 1 for ch in text]
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, multi, encoding = 70, 67, "UCS-2"
    units = sum(widths)
    if units == 0:
        return SmsCost(encoding, 0, 0)  # type: ignore[arg-type]
    if units <= single:
        return SmsCost(encoding, units, 1)  # type: ignore[arg-type]
    segments, used = 1, 0
    for width in widths:
        if used + width > multi:
            segments, used = segments + 1, 0
        used += width
    return SmsCost(encoding, units, segments)  # type: ignore[arg-type]


_SENTENCE_END = re.compile(r"(?<=[.!?:;\u05c3\u3002])\s+|\n+")
_WORD_GAP = re.compile(r"(?<=\s)(?=\S)")


def _pieces(text: str) -> list[str]:
    """Sentences (each with the whitespace that followed it), in order."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        out.append(text[start:m.end()])
        start = m.end()
    if start < len(text):
        out.append(text[start:])
    return [p for p in out if p]


def _fits(text: str, max_segments: int) -> bool:
    return sms_cost(text.strip()).segments <= max_segments


def _hard_split(piece: str, max_segments: int, reserve: str) -> list[str]:
    """A piece too long for one message: by words, then (a long URL) by characters."""
    out, current = [], ""
    for word in _WORD_GAP.split(piece):
        if _fits(current + word + reserve, max_segments):
            current += word
            continue
        if current:
            out.append(current)
            current = ""
        while not _fits(word + reserve, max_segments):
            cut = len(word)
            while cut > 1 and not _fits(word[:cut] + reserve, max_segments):
                cut = max(1, cut * 3 // 4)
            while cut + 1 < len(word) and _fits(word[:cut + 1] + reserve, max_segments):
                cut += 1
            out.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        out.append(current)
    return out


def _pack(text: str, max_segments: int, reserve: str) -> list[str]:
    parts, current = [], ""
    for piece in _pieces(text):
        if _fits(current + piece + reserve, max_segments):
            current += piece
            continue
        if current.strip():
            parts.append(current)
        current = ""
        if _fits(piece + reserve, max_segments):
            current = piece
        else:
            chunks = _hard_split(piece, max_segments, reserve)
            parts.extend(chunks[:-1])
            current = chunks[-1] if chunks else ""
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _shorten(text: str, max_segments: int, suffix: str) -> str:
    """Cut ``text`` at a word so that it + "..." + ``suffix`` fits in ``max_segments``."""
    words = _WORD_GAP.split(text)
    while words and not _fits("".join(words).rstrip() + "..." + suffix, max_segments):
        words.pop()
    kept = "".join(words).rstrip().rstrip(",;:-")
    if not kept:  # one enormous word
        kept = _hard_split(text, max_segments, "..." + suffix)[0].rstrip()
    return kept + "..."


def split_sms(text: str, *, segments_per_message: int = SMS_SEGMENTS_PER_MESSAGE,
              max_messages: int = SMS_MAX_MESSAGES) -> list[str]:
    """Plain text -> the SMS bodies to send, in order.

    One body when it fits in ``segments_per_message`` segments. Otherwise it is cut between
    sentences (then words, then characters), each body numbered " (1/3)", and cut after
    ``max_messages`` bodies, the last ending with "...". Hebrew or Russian text (UCS-2) fits
    about 2.3 times fewer characters per segment, so it is cut sooner.
    """
    text = text.strip()
    if not text:
        return []
    if _fits(text, segments_per_message):
        return [text]
    reserve = f" ({max_messages}/{max_messages})"
    parts = _pack(text, segments_per_message, reserve)
    if len(parts) > max_messages:
        parts = parts[:max_messages]
        parts[-1] = _shorten(parts[-1], segments_per_message, reserve)
    total = len(parts)
    if total == 1:
        return parts
    return [f"{part} ({n}/{total})" for n, part in enumerate(parts, 1)]


def split_whatsapp(text: str, limit: int = TWILIO_BODY_LIMIT,
                   max_parts: int = WHATSAPP_MAX_PARTS) -> list[str]:
    """WhatsApp bodies of at most ``limit`` characters, cut between paragraphs, lines, then
    sentences or words, at most ``max_parts`` of them (the last then ends with "...").
    WhatsApp shows long messages whole, so no numbering."""
    parts = _split_whatsapp(text, limit)
    if len(parts) > max_parts:
        parts = parts[:max_parts]
        parts[-1] = parts[-1][:limit - 3].rstrip() + "..."
    return parts


def _split_whatsapp(text: str, limit: int) -> list[str]:
    text = text.strip()
    if not text:
        return []
    if len(text) <= limit:
        return [text]
    parts, current = [], ""
    for block in re.split(r"(?<=\n)", text):
        if len(current) + len(block) <= limit:
            current += block
            continue
        if current.strip():
            parts.append(current)
        current = ""
        while len(block) > limit:
            window = block[:limit]
            cut = max(window.rfind(". "), window.rfind("! "), window.rfind("? "))
            cut = cut + 2 if cut > limit // 2 else window.rfind(" ") + 1
            if cut <= 0:
                cut = limit
            parts.append(block[:cut])
            block = block[cut:]
        current = block
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def render(channel: str, text: str) -> list[str]:
    """The bodies to send on ``channel`` ("whatsapp" or "sms") for the model's ``text``."""
    if channel == "whatsapp":
        return split_whatsapp(whatsapp_text(text))
    if channel == "sms":
        return split_sms(sms_text(text))
    raise ValueError(f"unknown messaging channel {channel!r}")
