"""Per-channel formatting: WhatsApp markup from Markdown, SMS plain text, segment counting
(GSM-7 vs UCS-2) and splitting."""

from __future__ import annotations

import pytest

from appliance.messaging import format as fmt
from appliance.messaging.format import sms_cost, sms_text, split_sms, split_whatsapp, whatsapp_text

MODEL_ANSWER = """# Opening hours

We're open **Sunday to Thursday**, *9:00–18:00*. Here's what we offer:

* Repairs of __washing machines__
+ ~~Old~~ New fridges
1. Call us
2. Or write to [our site](https://sunrise.example/contact_us)

Use the code `SPRING_24` — it's valid… until May 😊. <b>Thanks!</b>"""


def test_whatsapp_gets_its_own_markup() -> None:
    assert whatsapp_text(MODEL_ANSWER) == (
        "*Opening hours*\n\n"
        "We're open *Sunday to Thursday*, _9:00–18:00_. Here's what we offer:\n\n"
        "- Repairs of *washing machines*\n"
        "- ~Old~ New fridges\n"
        "1. Call us\n"
        "2. Or write to our site: https://sunrise.example/contact_us\n\n"
        "Use the code `SPRING_24` — it's valid… until May 😊. *Thanks!*")


@pytest.mark.parametrize("source, expected", [
    ("**bold** and *italic* and _also italic_", "*bold* and _italic_ and _also italic_"),
    ("***both***", "*_both_*"),
    ("snake_case_name and file_name.txt stay", "snake_case_name and file_name.txt stay"),
    ("5 * 3 * 2 = 30", "5 * 3 * 2 = 30"),
    ("see https://x.example/a_b_c", "see https://x.example/a_b_c"),
    ("[https://x.example](https://x.example)", "https://x.example"),
    ("line one<br>line two", "line one\nline two"),
    ("## **Prices**", "*Prices*"),
    ("a\n\n\n\nb", "a\n\nb"),
])
def test_whatsapp_conversions(source: str, expected: str) -> None:
    assert whatsapp_text(source) == expected


def test_sms_gets_plain_gsm7_text() -> None:
    text = sms_text(MODEL_ANSWER)
    assert text == (
        "Opening hours\n\n"
        "We're open Sunday to Thursday, 9:00-18:00. Here's what we offer:\n\n"
        "- Repairs of washing machines\n"
        "- Old New fridges\n"
        "1. Call us\n"
        "2. Or write to our site: https://sunrise.example/contact_us\n\n"
        "Use the code SPRING_24 - it's valid... until May. Thanks!")
    assert fmt.is_gsm7(text)
    # the model's typography alone would have cost UCS-2: 70-character segments
    assert sms_cost("it’s 9:00–18:00").encoding == "UCS-2"
    assert sms_cost(sms_text("it’s 9:00–18:00")).encoding == "GSM-7"


def test_sms_keeps_hebrew_and_russian_letters() -> None:
    assert sms_text("**שלום**, אנחנו פתוחים") == "שלום, אנחנו פתוחים"
    assert sms_text("*Здравствуйте*! 👋") == "Здравствуйте!"


@pytest.mark.parametrize("text, encoding, units, segments", [
    ("", "GSM-7", 0, 0),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),             # extension characters take two septets
    ("€" * 81, "GSM-7", 162, 2),
    ("a" * 152 + "€", "GSM-7", 154, 1),
    ("a" * 152 + "€" + "a" * 7, "GSM-7", 161, 2),
    ("ש" * 70, "UCS-2", 70, 1),
    ("ש" * 71, "UCS-2", 71, 2),
    ("ж" * 134, "UCS-2", 134, 2),
    ("ж" * 135, "UCS-2", 135, 3),
    ("a" * 69 + "é", "GSM-7", 70, 1),        # é is in the GSM alphabet
    ("a" * 69 + "á", "UCS-2", 70, 1),        # á is not: the whole message is UCS-2
    ("😀" * 35, "UCS-2", 70, 1),              # emoji: a surrogate pair each
    ("😀" * 36, "UCS-2", 72, 2),
])
def test_segment_counting(text: str, encoding: str, units: int, segments: int) -> None:
    assert sms_cost(text) == fmt.SmsCost(encoding, units, segments)  # type: ignore[arg-type]


def test_an_escape_pair_is_not_split_across_segments() -> None:
    # 152 'a' + '€' (2 septets) = 154 > 153: the pair moves whole into segment two.
    assert sms_cost("a" * 152 + "€" + "a" * 150).segments == 2
    assert sms_cost("a" * 152 + "€" + "a" * 152).segments == 3


def test_a_short_reply_is_one_message() -> None:
    assert split_sms("See you tomorrow at 10!") == ["See you tomorrow at 10!"]
    assert split_sms("   ") == []


def test_a_long_reply_is_cut_between_sentences_and_numbered() -> None:
    text = " ".join(f"Sentence {i} tells you something useful." for i in range(15))
    parts = split_sms(text)
    assert 1 < len(parts) <= fmt.SMS_MAX_MESSAGES
    for n, part in enumerate(parts, 1):
        assert part.endswith(f" ({n}/{len(parts)})")
        assert sms_cost(part).segments <= fmt.SMS_SEGMENTS_PER_MESSAGE
        body = part.rsplit(" (", 1)[0]
        assert body.endswith(".")          # whole sentences
    joined = " ".join(p.rsplit(" (", 1)[0] for p in parts)
    assert joined == text


def test_non_latin_text_is_cut_sooner() -> None:
    english = "We are open Sunday to Thursday. " * 8
    hebrew = "אנחנו פתוחים בימים ראשון עד חמישי. " * 8
    assert len(hebrew) >= len(english)
    assert split_sms(english.strip()) == [english.strip()] or len(split_sms(english)) == 1
    he_parts = split_sms(hebrew)
    assert len(he_parts) > 1
    assert all(sms_cost(p).encoding == "UCS-2" and sms_cost(p).segments <= 2 for p in he_parts)


def test_a_very_long_reply_is_kept_short() -> None:
    parts = split_sms("word " * 1000)
    assert len(parts) == fmt.SMS_MAX_MESSAGES
    assert parts[-1].endswith(f"... ({fmt.SMS_MAX_MESSAGES}/{fmt.SMS_MAX_MESSAGES})")
    assert all(sms_cost(p).segments <= fmt.SMS_SEGMENTS_PER_MESSAGE for p in parts)


def test_one_enormous_word_is_cut_by_characters() -> None:
    url = "https://example.com/" + "x" * 500
    parts = split_sms(url)
    assert len(parts) == 2
    assert "".join(p.rsplit(" (", 1)[0] for p in parts) == url


def test_whatsapp_splits_only_past_twilios_limit() -> None:
    short = "Hello " * 200
    assert split_whatsapp(short) == [short.strip()]
    long = ("paragraph " * 100 + "\n\n") * 10
    parts = split_whatsapp(long, max_parts=100)
    assert len(parts) > 1 and all(len(p) <= fmt.TWILIO_BODY_LIMIT for p in parts)
    assert " ".join(parts).split() == long.split()
    capped = split_whatsapp(long)                  # at most WHATSAPP_MAX_PARTS, marked cut
    assert capped[:-1] == parts[:fmt.WHATSAPP_MAX_PARTS - 1]
    assert len(capped) == fmt.WHATSAPP_MAX_PARTS and capped[-1].endswith("...")


def test_render_by_channel() -> None:
    assert fmt.render("whatsapp", "**Hi**") == ["*Hi*"]
    assert fmt.render("sms", "**Hi**") == ["Hi"]
    with pytest.raises(ValueError):
        fmt.render("fax", "Hi")
