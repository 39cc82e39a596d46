"""The guard against Whisper's inventions: pure rules that reject a decoded turn.

Whisper invents text on silence and noise ("Thank you for watching", "Продолжение следует").
``rejection_reason`` applies the rules listed on ``GuardThresholds``; a rejected transcript has
empty text and a short ``rejected_reason`` code (stt/whisper.py). ``choose_language`` picks the
configured language from the model's probabilities.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_GUARD", "GuardThresholds", "choose_language", "compression_ratio", "is_suspect_phrase",
           "junk_reason", "normalize_text", "rejection_reason"]


@dataclass(frozen=True)
class GuardThresholds:
    """When a transcript is rejected (reason codes in brackets), checked in this order:

    - audio shorter than ``min_audio_ms`` (too_short); the model is not run at all;
    - Whisper's own silence rule: no_speech_prob > ``no_speech_prob`` AND avg_logprob <
      ``avg_logprob`` (no_speech);
    - empty text (empty); no letter or digit at all (no_words); only bracketed or musical
      annotations such as "[Music]" (non_speech);
    - a known hallucination: credits and sign-offs learnt from subtitles, in EN/HE/RU, or a
      lone "you" (junk_phrase); one word looping (repetition);
    - gzip compression ratio above ``max_compression_ratio``, even after the fallback
      temperature (repetition);
    - a phrase that is a real caller's phrase too ("Thank you.", "תודה רבה", "Спасибо") alone,
      with weak evidence of speech: no_speech_prob > ``suspect_no_speech_prob`` or avg_logprob
      < ``suspect_avg_logprob`` (suspect_phrase).
    """

    min_audio_ms: int = 300
    no_speech_prob: float = 0.6
    avg_logprob: float = -1.0
    max_compression_ratio: float = 2.4
    suspect_no_speech_prob: float = 0.1
    suspect_avg_logprob: float = -0.8


DEFAULT_GUARD = GuardThresholds()


# Whole transcripts (normalised: lower case, no punctuation) that are never a caller's turn.
JUNK_PHRASES = frozenset({
    "you", "thank you for watching", "thanks for watching", "thank you so much for watching",
    "thank you for watching and see you next time", "thanks for watching see you next time",
    "thank you for listening", "please subscribe", "please subscribe to my channel",
    "like and subscribe", "don't forget to like and subscribe", "see you in the next video",
    "i'll see you in the next video", "see you next time",
    "продолжение следует", "спасибо за просмотр", "спасибо за внимание", "до новых встреч",
    "подписывайтесь на канал", "ставьте лайки и подписывайтесь на канал",
    "תודה שצפיתם", "תודה על הצפייה", "תודה רבה שצפיתם", "הירשמו לערוץ",
})
# Credits: the transcript starts with one of these (and is short).
JUNK_PREFIXES = (
    "subtitles by", "subtitled by", "subtitle by", "captions by", "captioning by",
    "closed captioning by", "transcribed by", "transcription by", "translated by",
    "translation by", "sync and corrections by", "english subtitles by",
    "редактор субтитров", "субтитры сделал", "субтитры создавал", "субтитры подготовил",
    "субтитры делал", "автор субтитров", "перевод и субтитры", "корректор",
    "תורגם על ידי", "תרגום וכתוביות", "כתוביות", "הכתוביות", "סונכרן על ידי",
)
JUNK_ANYWHERE = ("amara org", "dimatorzok")
JUNK_PREFIX_MAX_WORDS = 12
# Alone, these are hallucinations on noise far more often than a caller's whole turn.
SUSPECT_PHRASES = frozenset({
    "thank you", "thanks", "thank you very much", "thank you so much", "thank you bye",
    "bye", "bye bye", "תודה", "תודה רבה", "תודה לכם", "спасибо", "спасибо большое",
    "большое спасибо", "пока",
})
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|[♪♫♬♩]")


def normalize_text(text: str) -> str:
    """Lower case, no niqqud/accents, punctuation -> space, single spaces, "ё" -> "е"."""
    text = unicodedata.normalize("NFKD", text.casefold().replace("ё", "е"))
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat.startswith("M"):
            continue
        out.append(ch if cat[0] in "LN" or ch == "'" else " ")
    return " ".join("".join(out).replace(" '", " ").replace("' ", " ").split()).strip("'")


def junk_reason(text: str) -> str | None:
    """Reject code for text that is not a caller's words whatever the scores, else None."""
    if not text.strip():
        return "empty"
    if not _has_words(_ANNOTATION.sub(" ", text)):
        return "non_speech" if _ANNOTATION.search(text) else "no_words"
    norm = normalize_text(text)
    words = norm.split()
    if norm in JUNK_PHRASES or set(words) == {"you"}:
        return "junk_phrase"
    if len(words) <= JUNK_PREFIX_MAX_WORDS and any(
            norm == p or norm.startswith(p + " ") for p in JUNK_PREFIXES):
        return "junk_phrase"
    if any(marker in norm for marker in JUNK_ANYWHERE):
        return "junk_phrase"
    if len(words) >= 5 and len(set(words)) == 1:
        return "repetition"
    return None


def _has_words(text: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def is_suspect_phrase(text: str) -> bool:
    return normalize_text(text) in SUSPECT_PHRASES


def compression_ratio(text: str) -> float:
    """gzip ratio as Whisper computes it: high for looping text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def rejection_reason(text: str, *, audio_ms: int, no_speech_prob: float, avg_logprob: float,
                     compression_ratio: float = 0.0,
                     thresholds: GuardThresholds = DEFAULT_GUARD) -> str | None:
    """The reason code for rejecting a decoded turn, or None to accept it (see GuardThresholds)."""
    t = thresholds
    if audio_ms < t.min_audio_ms:
        return "too_short"
    if no_speech_prob > t.no_speech_prob and avg_logprob < t.avg_logprob:
        return "no_speech"
    reason = junk_reason(text)
    if reason is not None:
        return reason
    if compression_ratio > t.max_compression_ratio:
        return "repetition"
    if is_suspect_phrase(text) and (no_speech_prob > t.suspect_no_speech_prob
                                    or avg_logprob < t.suspect_avg_logprob):
        return "suspect_phrase"
    return None


def choose_language(probabilities: Mapping[str, float], configured: Iterable[str],
                    hint: str | None = None, hint_margin: float = 0.15) -> tuple[str, float]:
    """Best configured language by the model's probabilities; ``hint`` (the customer's known
    language) wins when it is configured and within ``hint_margin`` of the best."""
    configured = tuple(configured)
    best = max(configured, key=lambda code: probabilities.get(code, 0.0))  # first wins a tie
    best_p = probabilities.get(best, 0.0)
    if hint in configured and best_p - probabilities.get(hint, 0.0) <= hint_margin:
        return hint, probabilities.get(hint, 0.0)
    return best, best_p
