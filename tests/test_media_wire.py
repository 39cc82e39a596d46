import base64
import json

import pytest

from appliance.telephony.media import (
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    Start,
    Stop,
    WireError,
    binary_frame_error,
    clear_message,
    mark_message,
    media_message,
    parse_frame,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA5b2d8e3ab0b63b5b0e3e7a7d32b86b5e"
ACCOUNT = "AC00000000000000000000000000000000"
ULAW = bytes(range(256))[:160]
B64 = base64.b64encode(ULAW).decode()


def frame(**obj):
    return json.dumps(obj)


def media_frame(**overrides):
    media = {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": B64}
    media.update(overrides)
    return frame(event="media", sequenceNumber="4", streamSid=SID, media=media)


def start_frame(**start_overrides):
    start = {
        "accountSid": ACCOUNT,
        "streamSid": SID,
        "callSid": CALL,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"token": "abc", "caller": "+972500000000"},
    }
    start.update(start_overrides)
    return frame(event="start", sequenceNumber="1", streamSid=SID, start=start)


def error_code(text, **kwargs):
    with pytest.raises(WireError) as info:
        parse_frame(text, **kwargs)
    return info.value.code


# --- every inbound event from twilio.md -------------------------------------------------------

def test_connected():
    assert parse_frame('{"event":"connected","protocol":"Call","version":"1.0.0"}') == Connected(
        protocol="Call", version="1.0.0")


def test_start():
    event = parse_frame(start_frame())
    assert event == Start(
        stream_sid=SID,
        call_sid=CALL,
        account_sid=ACCOUNT,
        tracks=("inbound",),
        media_format=MediaFormat("audio/x-mulaw", 8000, 1),
        custom_parameters={"token": "abc", "caller": "+972500000000"},
        sequence=1,
    )
    with pytest.raises(TypeError):
        event.custom_parameters["x"] = "y"  # read-only


def test_start_without_custom_parameters():
    text = start_frame()
    data = json.loads(text)
    del data["start"]["customParameters"]
    assert parse_frame(json.dumps(data)).custom_parameters == {}


def test_media():
    event = parse_frame(media_frame())
    assert event == Media(stream_sid=SID, sequence=4, chunk=2, timestamp_ms=5, payload=ULAW,
                          track="inbound")
    assert isinstance(event.timestamp_ms, int)


def test_media_accepts_json_integers_and_empty_payload():
    event = parse_frame(media_frame(chunk=3, timestamp=60, payload=""))
    assert (event.chunk, event.timestamp_ms, event.payload) == (3, 60, b"")


def test_dtmf():
    text = frame(event="dtmf", streamSid=SID, sequenceNumber="5",
                 dtmf={"track": "inbound_track", "digit": "1"})
    assert parse_frame(text) == Dtmf(stream_sid=SID, sequence=5, digit="1", track="inbound_track")
    for digit in "0123456789*#":
        text = frame(event="dtmf", streamSid=SID, sequenceNumber="5", dtmf={"digit": digit})
        assert parse_frame(text).digit == digit


def test_mark():
    text = frame(event="mark", streamSid=SID, sequenceNumber="6", mark={"name": "label"})
    assert parse_frame(text) == Mark(stream_sid=SID, sequence=6, name="label")


def test_stop():
    text = frame(event="stop", streamSid=SID, sequenceNumber="7",
                 stop={"accountSid": ACCOUNT, "callSid": CALL})
    assert parse_frame(text) == Stop(stream_sid=SID, sequence=7, call_sid=CALL, account_sid=ACCOUNT)


def test_bytes_frame_is_accepted_as_utf8_json():
    assert isinstance(parse_frame(media_frame().encode()), Media)


# --- malformed input --------------------------------------------------------------------------

@pytest.mark.parametrize("text, code", [
    ("not json", "bad_json"),
    ('{"event": "media",', "bad_json"),
    ("", "bad_json"),
    ("[1, 2]", "not_object"),
    ('"media"', "not_object"),
    ("{}", "missing_field"),
    ('{"event": 5}', "bad_type"),
    ('{"event": ""}', "bad_value"),
    ('{"event": "hello"}', "unknown_event"),
    ('{"event": "clear", "streamSid": "MZ1"}', "unknown_event"),
])
def test_bad_envelope(text, code):
    assert error_code(text) == code


def test_bad_utf8_bytes():
    assert error_code(b'{"event":"\xff"}') == "bad_json"


@pytest.mark.parametrize("overrides, code", [
    ({"payload": "@@@@"}, "bad_base64"),
    ({"payload": "AAA"}, "bad_base64"),  # bad padding
    ({"payload": 123}, "bad_type"),
    ({"timestamp": "5.5"}, "bad_type"),
    ({"timestamp": "-1"}, "bad_type"),
    ({"timestamp": -1}, "bad_value"),
    ({"timestamp": True}, "bad_type"),
    ({"chunk": "two"}, "bad_type"),
    ({"chunk": "١٢"}, "bad_type"),  # non-ASCII digits
    ({"chunk": None}, "bad_type"),
])
def test_bad_media_fields(overrides, code):
    assert error_code(media_frame(**overrides)) == code


def test_media_missing_fields():
    for field in ("payload", "chunk", "timestamp"):
        data = json.loads(media_frame())
        del data["media"][field]
        assert error_code(json.dumps(data)) == "missing_field"
    data = json.loads(media_frame())
    del data["streamSid"]
    assert error_code(json.dumps(data)) == "missing_field"
    data = json.loads(media_frame())
    data["media"] = "payload"
    assert error_code(json.dumps(data)) == "bad_type"
    data = json.loads(media_frame())
    data["sequenceNumber"] = "x"
    assert error_code(json.dumps(data)) == "bad_type"


def test_oversized_payload_and_frame():
    big = base64.b64encode(b"\xff" * 20_000).decode()
    assert error_code(media_frame(payload=big)) == "payload_too_large"
    small_limit = base64.b64encode(b"\xff" * 161).decode()
    code = error_code(media_frame(payload=small_limit), max_payload_bytes=160)
    assert code == "payload_too_large"
    assert parse_frame(media_frame(), max_payload_bytes=160).payload == ULAW
    assert error_code(media_frame(), max_frame_chars=100) == "too_large"
    assert error_code("x" * 70_000) == "too_large"


@pytest.mark.parametrize("start_overrides, code", [
    ({"tracks": "inbound"}, "bad_type"),
    ({"tracks": [1]}, "bad_type"),
    ({"customParameters": ["a"]}, "bad_type"),
    ({"customParameters": {"a": 1}}, "bad_type"),
    ({"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": "8k", "channels": 1}}, "bad_type"),
    ({"mediaFormat": None}, "bad_type"),
    ({"callSid": ""}, "bad_value"),
    ({"callSid": 5}, "bad_type"),
])
def test_bad_start(start_overrides, code):
    assert error_code(start_frame(**start_overrides)) == code


def test_bad_control_events():
    assert error_code(frame(event="dtmf", streamSid=SID, dtmf={"digit": "x"})) == "bad_value"
    assert error_code(frame(event="dtmf", streamSid=SID, dtmf={"digit": "12"})) == "bad_value"
    assert error_code(frame(event="dtmf", streamSid=SID)) == "missing_field"
    assert error_code(frame(event="mark", streamSid=SID, mark={})) == "missing_field"
    assert error_code(frame(event="mark", streamSid=SID, mark={"name": ""})) == "bad_value"
    assert error_code(frame(event="stop", streamSid=SID, stop={})) == "missing_field"


def test_binary_frame_helper():
    err = binary_frame_error(b"\x00" * 10)
    assert isinstance(err, WireError) and err.code == "binary_frame"
    assert "10 bytes" in err.message


# --- outbound ---------------------------------------------------------------------------------

def test_media_message():
    text = media_message(SID, ULAW)
    assert json.loads(text) == {"event": "media", "streamSid": SID, "media": {"payload": B64}}
    assert " " not in text
    assert base64.b64decode(json.loads(text)["media"]["payload"]) == ULAW


def test_mark_and_clear_messages():
    assert json.loads(mark_message(SID, "reply-3:clause-1")) == {
        "event": "mark", "streamSid": SID, "mark": {"name": "reply-3:clause-1"}}
    assert json.loads(clear_message(SID)) == {"event": "clear", "streamSid": SID}


def test_outbound_builders_validate():
    with pytest.raises(ValueError):
        media_message("", ULAW)
    with pytest.raises(ValueError):
        mark_message(SID, "")
    with pytest.raises(ValueError):
        clear_message("")


def test_deeply_nested_json_is_a_wire_error_not_a_crash() -> None:
    """Found by the Media Streams fuzzer: json.loads raised RecursionError, which ended the
    call as a crashed stage."""
    with pytest.raises(WireError):
        parse_frame("[" * 20_000 + "]" * 20_000)
