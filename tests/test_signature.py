import hashlib
import json

import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from appliance.telephony.signature import (
    SignatureVerifier,
    signed_url,
    validate,
    validate_json_body,
)

# The twilio library's own unit-test vector (see shared/notes/twilio.md).
TOKEN = "12345"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="

PUBLIC = "https://example.trycloudflare.com"


def twilio_sign(url, params):
    return RequestValidator(TOKEN).compute_signature(url, params)


def test_library_test_vector():
    assert validate(TOKEN, VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE)


def test_forged_or_missing_signature():
    assert not validate(TOKEN, VECTOR_URL, VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8X")
    assert not validate("54321", VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE)
    assert not validate(TOKEN, VECTOR_URL, VECTOR_PARAMS, None)
    assert not validate(TOKEN, VECTOR_URL, VECTOR_PARAMS, "")
    assert not validate("", VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE)


def test_tampered_params_or_url():
    assert not validate(TOKEN, VECTOR_URL, {**VECTOR_PARAMS, "Digits": "9999"}, VECTOR_SIGNATURE)
    assert not validate(TOKEN, VECTOR_URL, {**VECTOR_PARAMS, "Extra": "1"}, VECTOR_SIGNATURE)
    assert not validate(TOKEN, VECTOR_URL.replace("foo=1", "foo=2"), VECTOR_PARAMS,
                        VECTOR_SIGNATURE)


def test_aiohttp_multidict_params():
    params = MultiDict(VECTOR_PARAMS)
    assert validate(TOKEN, VECTOR_URL, params, VECTOR_SIGNATURE)


def test_behind_the_tunnel():
    params = {"CallSid": "CA1", "From": "+972501234567", "To": "+97235550000"}
    signature = twilio_sign(f"{PUBLIC}/voice", params)
    # What the process sees: http://127.0.0.1:1337/voice. Checking that URL fails ...
    assert not validate(TOKEN, "http://127.0.0.1:1337/voice", params, signature)
    # ... rebuilding from the configured public URL and the raw path succeeds.
    assert signed_url(PUBLIC, "/voice") == f"{PUBLIC}/voice"
    verifier = SignatureVerifier(TOKEN, PUBLIC)
    assert verifier.check_form("/voice", params, signature)
    assert not verifier.check_form("/voice", {**params, "From": "+1"}, signature)


def test_raw_query_string_is_kept_verbatim():
    path_qs = "/voice/status?call=CA1&to=%2B972501234567"
    signature = twilio_sign(PUBLIC + path_qs, {"CallStatus": "completed"})
    assert SignatureVerifier(TOKEN, PUBLIC).check_form(path_qs, {"CallStatus": "completed"},
                                                       signature)
    decoded = "/voice/status?call=CA1&to=+972501234567"
    assert not SignatureVerifier(TOKEN, PUBLIC).check_form(decoded, {"CallStatus": "completed"},
                                                           signature)


def test_websocket_upgrade_url_without_params():
    signature = twilio_sign("wss://example.trycloudflare.com/media", {})
    verifier = SignatureVerifier(TOKEN, PUBLIC)
    assert verifier.check_websocket("/media", signature)
    assert not verifier.check_websocket("/media", twilio_sign(f"{PUBLIC}/media", {}))
    assert not verifier.check_websocket("/media", None)
    assert validate(TOKEN, signed_url(PUBLIC, "/media", websocket=True), None, signature)


def test_port_variants_are_accepted_by_the_library():
    signature = twilio_sign("https://example.com:443/voice", {"A": "1"})
    assert validate(TOKEN, "https://example.com/voice", {"A": "1"}, signature)


def test_json_body_webhook():
    body = json.dumps({"event": "status", "sid": "XX1"}).encode()
    digest = hashlib.sha256(body).hexdigest()
    path_qs = f"/events?bodySHA256={digest}"
    signature = twilio_sign(PUBLIC + path_qs, {})
    verifier = SignatureVerifier(TOKEN, PUBLIC)
    assert verifier.check_json(path_qs, body, signature)
    assert validate_json_body(TOKEN, PUBLIC + path_qs, body.decode(), signature)
    assert not verifier.check_json(path_qs, body + b" ", signature)  # body changed
    no_hash_sig = twilio_sign(f"{PUBLIC}/events", {})
    assert not verifier.check_json("/events", body, no_hash_sig)  # hash missing


@pytest.mark.parametrize("public, path_qs, ws, expected", [
    ("https://h.example", "/voice", False, "https://h.example/voice"),
    ("https://h.example/", "/voice?a=1", False, "https://h.example/voice?a=1"),
    ("https://h.example/prefix/", "/voice", False, "https://h.example/prefix/voice"),
    ("https://h.example:8443", "/media", True, "wss://h.example:8443/media"),
    ("http://localhost:8080", "/media", True, "ws://localhost:8080/media"),
    ("wss://h.example", "/voice", False, "https://h.example/voice"),
])
def test_signed_url(public, path_qs, ws, expected):
    assert signed_url(public, path_qs, websocket=ws) == expected


@pytest.mark.parametrize("public, path_qs", [
    ("h.example", "/voice"),
    ("ftp://h.example", "/voice"),
    ("https://h.example?x=1", "/voice"),
    ("https://h.example", "voice"),
])
def test_signed_url_rejects(public, path_qs):
    with pytest.raises(ValueError):
        signed_url(public, path_qs)


def test_verifier_validates_config():
    with pytest.raises(ValueError):
        SignatureVerifier("", PUBLIC)
    with pytest.raises(ValueError):
        SignatureVerifier(TOKEN, "example.com")
