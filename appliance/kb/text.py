"""Text normalisation and word handling shared by indexing and search (pure).

The same functions prepare passages for the FTS5 indexes and questions for querying them, so
both sides agree: case folded, diacritics and Hebrew points removed, words split on anything
that is not a letter or digit. On top of the words, "variants" help the languages the
tokenizer knows nothing about: Hebrew words without their prefix letters (ה, ו, ב, ל, מ, ש, כ)
and plural endings, Russian words cut to a 5-letter stem, and codes such as SKUs written
without their separators ("SW-WM-8123" -> "swwm8123").
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+")
_INNER_QUOTE = re.compile(r"(?<=\w)['\"\u05f3\u05f4\u2019](?=\w)")
_CODE = re.compile(r"\b[^\W_]+(?:[-./][^\W_]+)+\b")
_HEBREW = re.compile(r"^[\u05d0-\u05ea]+$")
_CYRILLIC = re.compile(r"^[\u0430-\u044f\u0451]+$")
_HEBREW_PREFIXES = "הובלמשכ"

STOPWORDS = frozenset("""
a an the is are was were be been being do does did done you your yours we our ours us i me my
it its of to in on at for with by from and or can could would will should shall may might must
what when where which who whom whose how much many there any have has had about please tell
this that these those if not no yes am pm get got also just than then so such as into out up
some all very too here hi hello thanks thank want need like know whats wheres whens hows
really take offer provide anything something
whos im ive id dont doesnt didnt cant isnt arent wont youre theyre thats theres lets
של את על עם זה זו זאת אני אתה את אתם אתן אנחנו הוא היא הם הן יש אין מה מתי איפה איך כמה האם
לא כן גם או אבל רק כל אם כי אל עד לי לכם לנו שלכם שלי אפשר רוצה צריך בבקשה תודה שלום
и в во на с со к ко по за из у о об от до для не да нет ли что как где когда какой какая какое
какие сколько это вы мы я ты он она они вас нас мне нам а но или же бы есть можно ваш ваши
вашей ваша мой моя мои у уже еще ещё пожалуйста спасибо здравствуйте хочу нужно подскажите
""".split())


def normalize(text: str) -> str:
    """Case folded, accents and Hebrew points stripped, inner apostrophes and gershayim dropped."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _INNER_QUOTE.sub("", unicodedata.normalize("NFKC", stripped).casefold())


def words(text: str) -> list[str]:
    """The words of already normalised text, in order (what unicode61 would index)."""
    return _WORD.findall(text)


def codes(text: str) -> list[str]:
    """Codes with separators and at least one digit ("sw-wm-8123"), written without them, and
    hyphenated words written as one ("x-ray" -> "xray", "check-up" -> "checkup")."""
    out = []
    for match in _CODE.finditer(text):
        token = match.group(0)
        if any(c.isdigit() for c in token) or ("-" in token and "." not in token
                                               and "/" not in token):
            out.append(re.sub(r"[-./]", "", token))
    return out


@lru_cache(maxsize=65536)
def variants(word: str) -> tuple[str, ...]:
    """Extra forms of one normalised word that should match it (may be empty)."""
    out: list[str] = []
    if _HEBREW.match(word):
        bases = [word]
        for n in (1, 2):
            if len(word) - n >= 3 and all(c in _HEBREW_PREFIXES for c in word[:n]):
                bases.append(word[n:])
        for base in bases:
            if base != word:
                out.append(base)
            if len(base) >= 5 and base.endswith(("ים", "ות")):
                out.append(base[:-2])
    elif _CYRILLIC.match(word) and len(word) > 5:
        out.append(word[:5])
    return tuple(dict.fromkeys(out))


def index_extra(normalised: str) -> str:
    """The "extra" column: variants and compacted codes of a passage's normalised text."""
    extra: list[str] = []
    for word in words(normalised):
        extra.extend(variants(word))
    extra.extend(codes(normalised))
    return " ".join(dict.fromkeys(extra))


def query_terms(question: str) -> list[str]:
    """Informative words of a question (normalised, stopwords removed, order kept, unique)."""
    normalised = normalize(question)
    terms = [w for w in words(normalised) if w not in STOPWORDS]
    terms.extend(codes(normalised))
    return list(dict.fromkeys(terms))


def trigrams(word: str) -> list[str]:
    return [word[i:i + 3] for i in range(len(word) - 2)]


def fts_quote(term: str) -> str:
    """One FTS5 string token: the term in double quotes, inner quotes doubled."""
    return '"' + term.replace('"', '""') + '"'


def edit_distance_at_most(a: str, b: str, limit: int) -> bool:
    """Damerau-Levenshtein (adjacent transpositions) distance of a and b is <= limit."""
    if abs(len(a) - len(b)) > limit:
        return False
    if a == b:
        return True
    previous2: list[int] | None = None
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if (previous2 is not None and i > 1 and j > 1 and ca == b[j - 2]
                    and a[i - 2] == cb):
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return False
        previous2, previous = previous, current
    return previous[-1] <= limit


def fuzzy_limit(word: str) -> int:
    """Typos tolerated in a word: none for short words and anything with digits (codes)."""
    if any(c.isdigit() for c in word) or len(word) < 5:
        return 0
    return 1 if len(word) < 9 else 2


def word_matches(term: str, word: str) -> bool:
    """Is ``word`` the question ``term`` with a typo, possibly in another inflected form?"""
    limit = fuzzy_limit(term)
    if not limit or len(word) < 5:
        return False
    # Compare the shorter word with the start of the longer one when they differ by a short
    # ending ("retrun" ~ "return|ed"), and the whole words otherwise.
    longer, shorter = (word, term) if len(word) > len(term) else (term, word)
    # A typo and an ending at once only in longer words: "local" is not "locat|ed".
    prefix_limit = limit if len(shorter) >= 6 else 0
    if len(longer) - len(shorter) <= 3 and edit_distance_at_most(
            shorter, longer[:len(shorter)], prefix_limit):
        return True
    return abs(len(word) - len(term)) <= limit and edit_distance_at_most(term, word, limit)


def term_matches(term: str, passage_words: frozenset[str]) -> bool:
    """Does a question term occur in a passage, allowing word forms and typos?"""
    if term in passage_words:
        return True
    if any(v in passage_words for v in variants(term)):
        return True
    return any(word_matches(term, word) for word in passage_words)
