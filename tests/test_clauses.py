"""ClauseSplitter and speakable(): streamed LLM text -> pieces for Piper."""

from __future__ import annotations

import random
import re

import pytest

from appliance.tts.clauses import ClauseSplitter, speakable


def llm_tokens(text: str) -> list[str]:
    """Split like a BPE tokenizer streams: words with their leading space, digits in groups of
    up to three, punctuation on its own."""
    return re.findall(r" ?[^\W\d_]+|\d{1,3}|\s+|[^\w\s]|_", text)


def chunkings(text: str) -> dict[str, list[str]]:
    rng = random.Random(len(text))
    cuts = sorted(rng.sample(range(1, len(text)), k=len(text) // 4)) if len(text) > 1 else []
    random_chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    return {"tokens": llm_tokens(text), "chars": list(text), "random": random_chunks,
            "whole": [text]}


def split_stream(deltas: list[str], **options: int) -> tuple[list[list[str]], list[str]]:
    """Feed the deltas; return what each feed returned and what flush returned."""
    splitter = ClauseSplitter(**options)
    fed = [splitter.feed(d) for d in deltas]
    return fed, splitter.flush()


def pieces_of(text: str, **options: int) -> list[str]:
    """The pieces, after checking that every chunking of the stream gives the same ones."""
    results = {}
    for name, deltas in chunkings(text).items():
        assert "".join(deltas) == text
        fed, flushed = split_stream(deltas, **options)
        results[name] = [p for batch in fed for p in batch] + flushed
    assert all(r == results["tokens"] for r in results.values()), results
    return results["tokens"]


def test_llm_tokens_helper_round_trips() -> None:
    text = "Sure, it's ₪1,200 at 12:30 — e.g. Dr. Cohen."
    assert "".join(llm_tokens(text)) == text
    assert llm_tokens("costs 1200")[-2:] == ["120", "0"]


# -- the first piece comes early ------------------------------------------------------------

@pytest.mark.parametrize("text, first", [
    ("Yes, of course, I can book that for you. Which day suits you?", "Yes, of course,"),
    ("Sure, I can help with that. What time works for you?", "Sure, I can help with that."),
    ("Hello and welcome — how can I help you today?", "Hello and welcome"),
    ("Our opening hours are: Sunday to Thursday, nine to six.", "Our opening hours are:"),
    ("Thanks for waiting; I have checked the calendar for you.", "Thanks for waiting;"),
    ("Yes.", "Yes."),
    ("OK! I will pass that on.", "OK!"),
    ("שלום, אני יכולה לעזור לך לקבוע תור. מתי נוח לך?", "שלום, אני יכולה לעזור לך לקבוע תור."),
    ("בשמחה, יש לנו תור פנוי מחר, בשעה עשר בבוקר.", "בשמחה, יש לנו תור פנוי מחר,"),
    ("Здравствуйте, доставка стоит триста рублей, и занимает два дня.",
     "Здравствуйте, доставка стоит триста рублей,"),
])
def test_first_piece_is_the_first_speakable_clause(text: str, first: str) -> None:
    assert pieces_of(text)[0] == first


def test_first_piece_is_returned_by_the_feed_that_completes_it() -> None:
    """Returned as soon as the character after the comma arrives, not at the sentence end."""
    splitter = ClauseSplitter()
    assert splitter.feed("Yes") == []
    assert splitter.feed(",") == []
    assert splitter.feed(" of") == []
    assert splitter.feed(" course") == []
    assert splitter.feed(",") == []          # could still be "1,200": wait for the next char
    assert splitter.feed(" I") == ["Yes, of course,"]
    assert splitter.pending == "I"


def test_later_pieces_wait_for_sentence_ends() -> None:
    text = ("Sure, we are open today, tomorrow and Friday, from nine to five. "
            "Would you like me to book a time, or send you our address?")
    assert pieces_of(text) == [
        "Sure, we are open today,",
        "tomorrow and Friday, from nine to five.",
        "Would you like me to book a time, or send you our address?",
    ]


def test_first_min_words_is_configurable() -> None:
    text = "Hello there, Dana here, how can I help?"
    assert pieces_of(text)[0] == "Hello there, Dana here,"
    assert pieces_of(text, first_min_words=2)[0] == "Hello there,"


# -- what is not a boundary -----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("The premium plan costs ₪1,200 per year. Shall I send details?",
     ["The premium plan costs ₪1,200 per year.", "Shall I send details?"]),
    ("That is 3.5% less if you pay upfront. Anything else?",
     ["That is 3.5% less if you pay upfront.", "Anything else?"]),
    ("Your appointment is at 12:30 on Sunday. See you then!",
     ["Your appointment is at 12:30 on Sunday.", "See you then!"]),
    ("Dr. Cohen can see you tomorrow. Mr. Levi is away.",
     ["Dr. Cohen can see you tomorrow.", "Mr. Levi is away."]),
    ("Bring a document, e.g. a passport or i.e. any photo ID. Thanks!",
     ["Bring a document,", "e.g. a passport or i.e. any photo ID.", "Thanks!"]),
    ("We open at 9 a.m. and close at 6 p.m. See you soon.",
     ["We open at 9 a.m. and close at 6 p.m.", "See you soon."]),
    ("You can book at www.example.co.il/book?day=sun now. Or call us.",
     ["You can book at www.example.co.il/book?day=sun now.", "Or call us."]),
    ("It costs $5.50. The U.S. office is closed.", ["It costs $5.50.", "The U.S. office is closed."]),
    ("A J. Smith called about order no. 5531. He will call back.",
     ["A J. Smith called about order no. 5531.", "He will call back."]),
    ("Call 054-123-4567 any time. We answer fast.",
     ["Call 054-123-4567 any time.", "We answer fast."]),
    ("It takes 2–3 days. Delivery is free.", ["It takes 2–3 days.", "Delivery is free."]),
    ("Well... let me check that for you.", ["Well...", "let me check that for you."]),
    ('He said "we are closed." Then he left.', ['He said "we are closed."', "Then he left."]),
    ("Really?! That is great.", ["Really?!", "That is great."]),
    ("Доставка стоит 300 руб. и занимает 2-3 дня, т.е. до пятницы. Что-нибудь ещё?",
     ["Доставка стоит 300 руб. и занимает 2-3 дня,", "т.е. до пятницы.", "Что-нибудь ещё?"]),
    ("התור שלך מחר ב-10:30. נתראה!", ["התור שלך מחר ב-10:30.", "נתראה!"]),
    ("המחיר הוא ₪1,200 לשנה. רוצה שאשלח פרטים?", ["המחיר הוא ₪1,200 לשנה.", "רוצה שאשלח פרטים?"]),
])
def test_numbers_abbreviations_urls_are_not_cut(text: str, expected: list[str]) -> None:
    assert pieces_of(text) == expected


def test_ambiguous_abbreviation_waits_for_the_next_word() -> None:
    splitter = ClauseSplitter()
    assert splitter.feed("We close at 6 p.m.") == []
    assert splitter.feed(" ") == []           # "p.m. tomorrow" or "p.m. See you"?
    assert splitter.feed("See") == ["We close at 6 p.m."]


def test_decimal_split_across_deltas_is_not_cut() -> None:
    fed, flushed = split_stream(["It is 3", ".", "5", " km away", "."])
    assert fed == [[], [], [], [], []]
    assert flushed == ["It is 3.5 km away."]


# -- length fallback ------------------------------------------------------------------------

def test_long_first_sentence_is_cut_at_a_word_boundary() -> None:
    text = ("A very long sentence without any punctuation at all that keeps going and going "
            "because the model forgot to stop talking about the appointment options this week")
    pieces = pieces_of(text, first_max_chars=60)
    assert len(pieces) == 2
    assert len(pieces[0]) <= 60
    assert " ".join(pieces) == text


def test_long_later_sentence_prefers_a_clause_boundary() -> None:
    text = ("Hi there. We have slots on Sunday morning, Monday afternoon, Tuesday at noon, "
            "Wednesday evening and Thursday, and all of them can be booked by phone today.")
    pieces = pieces_of(text, first_max_chars=60, max_chars=80)
    assert pieces[0] == "Hi there."
    assert all(len(p) <= 80 for p in pieces)
    assert pieces[1].endswith(",")
    assert " ".join(pieces) == text


def test_giant_token_waits_for_white_space() -> None:
    url = "https://example.com/" + "x" * 150
    pieces = pieces_of(f"Open {url} please.", first_max_chars=40)
    assert pieces == ["Open", f"{url} please."]


# -- markup ---------------------------------------------------------------------------------

def test_markdown_lists_and_headings_become_plain_pieces() -> None:
    text = ("### Opening hours\n**Sunday to Thursday:** 9:00–18:00\n- Friday: 9:00–13:00\n"
            "- Saturday: closed 😊\n\n1. Call us\n2. Or write on WhatsApp 👍")
    assert pieces_of(text) == [
        "Opening hours",
        "Sunday to Thursday: 9:00–18:00",
        "Friday: 9:00–13:00",
        "Saturday: closed",
        "Call us",
        "Or write on WhatsApp",
    ]


def test_emoji_only_pieces_are_dropped() -> None:
    assert pieces_of("Great! 🎉🎉 See you tomorrow.") == ["Great!", "See you tomorrow."]
    assert pieces_of("👍") == []
    assert pieces_of("") == []


@pytest.mark.parametrize("raw, spoken", [
    ("**Bold** and *italic* and __under__ and `code`", "Bold and italic and under and code"),
    ("# Title", "Title"),
    ("- item one", "item one"),
    ("• item", "item"),
    ("> quoted reply", "quoted reply"),
    ("See [our site](https://example.com) now", "See our site now"),
    ("Thanks 🙏🏽 see you ❤️ soon ⭐", "Thanks see you soon"),
    ("Flag 🇮🇱 and family 👨‍👩‍👧", "Flag and family"),
    ("Great 😊.", "Great."),
    ("snake_case_name stays", "snake_case_name stays"),
    ("tabs\tand\nnewlines", "tabs and newlines"),
    ("Price ₪1,200 (VAT incl.)", "Price ₪1,200 (VAT incl.)"),
    ("Trailing dash —", "Trailing dash"),
    ("שלום! 😀 **מחר** בעשר", "שלום! מחר בעשר"),
    ("***", ""),
])
def test_speakable(raw: str, spoken: str) -> None:
    assert speakable(raw) == spoken


# -- whole replies streamed token by token --------------------------------------------------

REPLIES = [
    ("Hello, thanks for calling Dana's Salon. We are open Sunday to Thursday from 9:00 to "
     "18:00, and on Friday until 13:00. Would you like to book an appointment?"),
    ("Of course! A men's haircut costs ₪120, and coloring starts at ₪350. Dr. Levi, our "
     "trichologist, sees clients on Mondays. Shall I check his availability?"),
    "I'm sorry, I didn't catch that. Could you repeat your phone number, digit by digit?",
    ("Your order no. 5531 was shipped on 3.11 and should arrive within 2-3 business days, "
     "i.e. by Thursday. You can track it at www.example.com/track?id=5531."),
    "שלום, תודה שהתקשרת. אנחנו פתוחים מ-9:00 עד 18:00. תרצה לקבוע תור?",
    ("Здравствуйте! Доставка по городу стоит 300 рублей, т.е. бесплатно от 5 000 рублей. "
     "Что-нибудь ещё?"),
]


@pytest.mark.parametrize("reply", REPLIES)
def test_replies_lose_no_words(reply: str) -> None:
    pieces = pieces_of(reply)
    assert pieces, reply
    assert " ".join(pieces).split() == speakable(reply).split()
    assert all(p == p.strip() and p for p in pieces)
    # the first piece is short, so speech starts early
    assert len(pieces[0]) <= 100


def test_splitter_refuses_silly_options() -> None:
    with pytest.raises(ValueError):
        ClauseSplitter(first_min_words=0)
    with pytest.raises(ValueError):
        ClauseSplitter(first_max_chars=200, max_chars=100)
