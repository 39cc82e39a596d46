"""Issue 13, item 2: which `From` values are a withheld number (pure)."""

from __future__ import annotations

import pytest

from appliance.telephony.caller_id import classify, keypad


@pytest.mark.parametrize("raw", [
    "+266696687", "+7378742833", "+86282452253", "+8656696", "266696687", "+1266696687",
    "anonymous", "Anonymous", "restricted", "unknown", "private", "UNAVAILABLE", "", "  ",
    None, "sip:anonymous@pstn.twilio.com", "client:anonymous", "+0", "+123", "Dana",
])
def test_withheld_numbers_are_anonymous(raw) -> None:
    assert classify(raw).anonymous and classify(raw).number is None


@pytest.mark.parametrize("raw, number", [
    ("+972501234567", "+972501234567"), ("whatsapp:+972501234567", "+972501234567"),
    ("+1 (555) 000-1111", "+15550001111"), ("tel:+447700900123", "+447700900123"),
])
def test_real_numbers_are_kept(raw: str, number: str) -> None:
    assert classify(raw).number == number and not classify(raw).anonymous


def test_the_placeholders_are_the_words_on_a_keypad() -> None:
    assert keypad("anonymous") == "266696687" and keypad("restricted") == "7378742833"
    assert keypad("unavailable") == "86282452253" and keypad("unknown") == "8656696"
