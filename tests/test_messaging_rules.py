"""Pure rules: opt-out/opt-in words, WhatsApp's 24-hour window, the retry policy, how send
failures are classified, webhook parsing, and the fixed notices."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from twilio.base.exceptions import TwilioRestException

from appliance.messaging import notices, optout, window
from appliance.messaging.failures import RetryPolicy, classify_failure
from appliance.messaging.twilio_rest import RebasedHttpClient
from appliance.messaging.store import OutRow
from appliance.messaging.webhooks import BadWebhook, parse_inbound

# -- opt-out -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    "STOP", "stop", " Stop ", "Stop!", "STOP.", "stop please", "Please stop", "STOP ALL",
    "stopall", "Unsubscribe", "unsubscribe me", "OPT-OUT", "opt out", "optout",
    "הסר", "הסרה", " הסר! ", "стоп", "Стоп", "отписаться", "Stop 🙏",
])
@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_opt_out_words(body: str, channel: str) -> None:
    word = optout.classify(body, channel)
    assert word is not None and word.action == "opt_out"


@pytest.mark.parametrize("body", ["cancel", "CANCEL", "end", "quit", "revoke"])
def test_carrier_words_opt_out_on_sms_only(body: str) -> None:
    assert optout.classify(body, "sms") == optout.ConsentWord("opt_out", body.lower())
    # On WhatsApp "cancel" is an answer about an appointment, not a STOP.
    assert optout.classify(body, "whatsapp") is None


@pytest.mark.parametrize("body", [
    "cancel my appointment", "please stop by tomorrow", "stopwatch", "Can I stop the repair?",
    "don't stop", "", "   ", "🙂", "stop " * 30,
])
def test_sentences_are_not_keywords(body: str) -> None:
    assert optout.classify(body, "sms") is None
    assert optout.classify(body, "whatsapp") is None


def test_opt_in_words() -> None:
    assert optout.classify("START", "whatsapp") == optout.ConsentWord("opt_in", "start")
    assert optout.classify("unstop", "sms") == optout.ConsentWord("opt_in", "unstop")
    assert optout.classify("Yes", "sms") == optout.ConsentWord("opt_in", "yes")
    assert optout.classify("Yes", "whatsapp") is None


# -- 24-hour window ----------------------------------------------------------------------------

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_sms_has_no_window() -> None:
    assert window.decide("sms", None, NOW, "").mode == "freeform"


def test_inside_the_window_free_form() -> None:
    last = NOW - timedelta(hours=23)
    assert window.decide("whatsapp", last, NOW, "").mode == "freeform"
    assert window.decide("whatsapp", last, NOW, "HX1").mode == "freeform"


def test_outside_the_window_template_or_a_clear_reason() -> None:
    last = NOW - timedelta(hours=25)
    decision = window.decide("whatsapp", last, NOW, "HX123")
    assert decision.mode == "template" and "HX123" in decision.reason
    blocked = window.decide("whatsapp", last, NOW, "")
    assert blocked.mode == "blocked"
    assert "24-hour window" in blocked.reason and "whatsapp_template_sid" in blocked.reason
    assert window.decide("whatsapp", None, NOW, "").mode == "blocked"


def test_the_window_closes_a_little_early() -> None:
    almost = NOW - window.WINDOW + timedelta(minutes=1)
    assert not window.window_open(almost, NOW)
    assert window.window_open(almost, NOW, margin=timedelta(0))


# -- retries and failures ----------------------------------------------------------------------

def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_s=2, cap_s=60, max_attempts=10, jitter=0.2)
    assert [policy.delay_s(n, rand=0.5) for n in (1, 2, 3, 4, 5, 6, 7)] == \
        [2, 4, 8, 16, 32, 60, 60]
    assert 1.6 <= policy.delay_s(1, rand=0.0) <= policy.delay_s(1, rand=1.0) <= 2.4


def _row(channel: str = "whatsapp", content_sid: str | None = None) -> OutRow:
    return OutRow(1, 1, "SMx", 0, "reply", channel, "+972501234567",
                  ("whatsapp:" if channel == "whatsapp" else "") + "+972501234567",
                  "whatsapp:+14155238886", "hi", content_sid, "sending", 1, None, None, None)


def _rest(status: int, code: int | None = None) -> TwilioRestException:
    return TwilioRestException(status, "/Messages.json", "boom", code or status, "POST")


@pytest.mark.parametrize("exc, action", [
    (_rest(429), "retry"),                  # created nothing, try later
    (_rest(401, 20003), "retry"),           # credentials may be fixed
    (_rest(500), "unknown"),                # may have been created: look it up first
    (_rest(503), "unknown"),
    (_rest(400, 21211), "failed"),          # invalid number: retrying will not help
    (_rest(400, 21610), "failed"),          # the customer sent STOP to Twilio
    (TimeoutError(), "unknown"),
    (aiohttp.ServerDisconnectedError(), "unknown"),
    (RuntimeError("bug"), "unknown"),
])
def test_failures_are_classified(exc: BaseException, action: str) -> None:
    assert classify_failure(exc, _row(), "").action == action


async def test_connection_refused_is_certainly_not_sent() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.post(f"http://127.0.0.1:{port}/")
    assert classify_failure(info.value, _row(), "").action == "retry"


def test_63016_switches_to_the_template_once() -> None:
    assert classify_failure(_rest(400, 63016), _row(), "HX1").action == "template"
    assert classify_failure(_rest(400, 63016), _row(), "").action == "failed"
    assert classify_failure(_rest(400, 63016), _row(content_sid="HX1"), "HX1").action == "failed"


async def test_the_rest_client_is_rebased_onto_the_stand_in() -> None:
    async with RebasedHttpClient("http://127.0.0.1:9999/prefix", timeout=3) as client:
        assert client.rebase("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?x=1") \
            == "http://127.0.0.1:9999/prefix/2010-04-01/Accounts/AC1/Messages.json?x=1"
    async with RebasedHttpClient("", timeout=3) as plain:
        assert plain.rebase("https://api.twilio.com/x") == "https://api.twilio.com/x"


# -- webhook parsing ---------------------------------------------------------------------------

def test_channel_is_recognised_from_the_prefix() -> None:
    wa = parse_inbound({"MessageSid": "SM" + "1" * 32, "From": "whatsapp:+972501234567",
                        "To": "whatsapp:+14155238886", "Body": "hi", "ProfileName": "Dana"})
    assert (wa.channel, wa.phone, wa.profile_name) == ("whatsapp", "+972501234567", "Dana")
    sms = parse_inbound({"MessageSid": "SM" + "2" * 32, "From": "+972501234567",
                         "To": "+14155550100", "Body": "hi"})
    assert (sms.channel, sms.phone) == ("sms", "+972501234567")


@pytest.mark.parametrize("params, status, reason", [
    ({}, 400, "MessageSid missing"),
    ({"MessageSid": "SM1", "From": "+972501234567", "To": "+1"}, 400, "MessageSid malformed"),
    ({"MessageSid": "SM" + "1" * 32, "To": "+14155550100"}, 400, "From missing"),
    ({"MessageSid": "SM" + "1" * 32, "From": "+972501234567"}, 400, "To missing"),
    ({"MessageSid": "SM" + "1" * 32, "From": "whatsapp:Dana", "To": "x"}, 400,
     "From is not a phone number"),
    ({"MessageSid": "SM" + "1" * 32, "From": "+972501234567", "To": "x", "NumMedia": "x"}, 400,
     "NumMedia is not a number"),
    ({"MessageSid": "SM" + "1" * 32, "From": "+972501234567", "To": "x", "NumMedia": "11"}, 400,
     "NumMedia must be 0..10"),
    ({"MessageSid": "SM" + "1" * 32, "From": "+972501234567", "To": "x", "NumMedia": "1"}, 400,
     "MediaUrl0 missing"),
    ({"MessageSid": "SM" + "1" * 32, "From": "+972501234567", "To": "x", "Body": "x" * 16001},
     413, "Body longer than 16000 characters"),
])
def test_bad_webhooks_say_what_is_wrong(params: dict[str, str], status: int, reason: str) -> None:
    with pytest.raises(BadWebhook) as info:
        parse_inbound(params)
    assert (info.value.status, info.value.reason) == (status, reason)


def test_media_kinds() -> None:
    msg = parse_inbound({
        "MessageSid": "MM" + "1" * 32, "From": "whatsapp:+972501234567", "To": "w", "Body": "",
        "NumMedia": "4", "MediaUrl0": "https://api.twilio.com/a", "MediaContentType0": "audio/ogg",
        "MediaUrl1": "https://api.twilio.com/b", "MediaContentType1": "image/jpeg",
        "MediaUrl2": "https://api.twilio.com/c", "MediaContentType2": "application/pdf",
        "MediaUrl3": "https://api.twilio.com/d"})
    assert [m.kind for m in msg.media] == ["voice", "image", "document", "document"]
    assert msg.media[3].content_type == "application/octet-stream"


# -- notices -----------------------------------------------------------------------------------

def test_notices_follow_the_customers_script() -> None:
    assert notices.choose_language("שלום", None, None, "en") == "he"
    assert notices.choose_language("Привет", None, None, "en") == "ru"
    assert notices.choose_language("", "ru", None, "en") == "ru"
    assert notices.choose_language("hello", None, "he", "en") == "he"
    assert notices.choose_language("", None, None, "fr") == "en"
    for kind in ("opt_out", "opt_in", "unsupported_media", "voice_unusable", "voice_failed",
                 "voice_too_long", "empty", "unavailable"):
        for language in notices.LANGUAGES:
            assert notices.notice(kind, language)  # type: ignore[arg-type]
