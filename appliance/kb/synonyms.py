"""Receptionist vocabulary: words callers use for what the files call otherwise (pure data).

Generic to any small business, never per business: a caller asks "where are you located" and the
page says "Address and parking"; "how much" where the file says "price"; "book" where it says
"appointment". Each group is a set of words that stand for one another in a question; a question
word of a group is expanded to the group's other words that the index holds (search.py), counted
as ``WEIGHT`` of the word for the no-answer decision.

Words are normalised (text.normalize) single words; several forms of one word are listed
because the index keeps words as written.
"""

from __future__ import annotations

from functools import lru_cache

WEIGHT = 0.8

GROUPS: tuple[frozenset[str], ...] = tuple(frozenset(g.split()) for g in (
    "address location located locate directions direction situated find map parking park",
    "price prices cost costs costing fee fees charge charges charged rate rates pricing "
    "expensive cheap tariff",
    "open opening hours close closes closing closed",
    "book booking appointment appointments schedule reserve reservation reservations visit",
    "cancel cancelling canceling cancellation cancellations reschedule",
    "pay paying payment payments card cards credit cash visa mastercard bit paybox installments",
    "phone telephone number call contact whatsapp",
    "emergency emergencies urgent urgently",
    "kids kid children child toddler toddlers",
    "guarantee guaranteed guarantees warranty",
    "wheelchair accessible accessibility disabled disability",
    "deliver delivery deliveries shipping",
    "refund refunds return returns",
    "nervous scared afraid anxious anxiety fear",
    "night overnight nights",
    "remove removal removing pull pulling pulled extract extraction",
    "outside outdoor outdoors terrace patio garden",
    "kosher kashrut",
    "staff team",
    # Hebrew and Russian: the same few needs
    "כתובת מיקום נמצאים ממוקמים נמצאת חניה חנייה חניון לחנות",
    "מחיר מחירים עולה עלות תעריף",
    "адрес находится находитесь расположены парковка",
    "цена цены стоимость стоит тариф",
))


@lru_cache(maxsize=4096)
def synonyms(term: str) -> tuple[str, ...]:
    """The other words of every group ``term`` belongs to (empty for most words)."""
    out: list[str] = []
    for group in GROUPS:
        if term in group:
            out.extend(sorted(group - {term}))
    return tuple(dict.fromkeys(out))
