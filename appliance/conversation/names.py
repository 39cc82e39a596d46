"""A customer's name, as stored: it goes into the system prompt, mail subjects and the
calendar feed, so it is checked where it is set (memory.update_customer, the CSV import, the
message tool), not where it is used.

Allowed: letters of any script (with their combining marks), spaces, and the punctuation of
names (' ’ - .). At most NAME_MAX characters after spaces are collapsed. Anything else - digits,
newlines, quotes, brackets, '@', ':' - is refused with InvalidName, never silently kept.
"""

from __future__ import annotations

import unicodedata

NAME_MAX = 60
NAME_PUNCTUATION = frozenset("'’-.")


class InvalidName(ValueError):
    pass


def clean_name(text: str) -> str:
    """The name to store ('' stays ''), or InvalidName saying what is wrong."""
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if len(name) > NAME_MAX:
        raise InvalidName(f"a name is at most {NAME_MAX} characters")
    for ch in name:
        if ch == " " or ch in NAME_PUNCTUATION:
            continue
        if unicodedata.category(ch)[0] not in ("L", "M"):
            raise InvalidName(f"a name has only letters, spaces and ' - . (not {ch!r})")
    if name and not any(unicodedata.category(ch)[0] == "L" for ch in name):
        raise InvalidName("a name needs at least one letter")
    return name
