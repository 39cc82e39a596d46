"""Twilio Media Streams wire format <-> typed events. Pure: no I/O.

Inbound frames are JSON text; numeric-looking fields (sequenceNumber, chunk, timestamp) arrive
as strings. ``parse_frame`` returns one of Connected / Start / Media / Dtmf / Mark / Stop, or
raises ``WireError`` with a short machine code. Outbound: ``media_message``, ``mark_message``,
``clear_message`` build the JSON text to send.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

logger = logging.getLogger(__name__)

MAX_FRAME_CHARS = 64 * 1024  # a 20 ms media frame is ~350 chars
MAX_PAYLOAD_BYTES = 16_000  # 2 s of 8 kHz mu-law; Twilio sends 160 bytes (20 ms)
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class WireError(Exception):
    """A frame that is not valid Twilio Media Streams JSON.

    Codes: ``too_large``, ``bad_json``, ``not_object``, ``unknown_event``, ``missing_field``,
    ``bad_type``, ``bad_value``, ``bad_base64``, ``payload_too_large``, ``binary_frame``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True)
class MediaFormat:
    encoding: str  # "audio/x-mulaw"
    sample_rate_hz: int  # 8000
    channels: int  # 1


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    media_format: MediaFormat
    custom_parameters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    sequence: int | None = None


@dataclass(frozen=True)
class Media:
    stream_sid: str
    sequence: int
    chunk: int
    timestamp_ms: int  # ms since the stream started, on Twilio's clock
    payload: bytes  # decoded mu-law, 8 kHz mono
    track: str = "inbound"


@dataclass(frozen=True)
class Dtmf:
    stream_sid: str
    sequence: int | None
    digit: str
    track: str = "inbound_track"


@dataclass(frozen=True)
class Mark:
    stream_sid: str
    sequence: int | None
    name: str


@dataclass(frozen=True)
class Stop:
    stream_sid: str
    sequence: int | None
    call_sid: str
    account_sid: str = ""


InboundEvent = Connected | Start | Media | Dtmf | Mark | Stop


# --- field access -------------------------------------------------------------------------------

def _obj(container: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = _get(container, key)
    if not isinstance(value, dict):
        raise WireError("bad_type", f"{key!r} must be an object")
    return value


def _get(container: Mapping[str, Any], key: str) -> Any:
    if key not in container:
        raise WireError("missing_field", f"missing {key!r}")
    return container[key]


def _str(container: Mapping[str, Any], key: str, *, nonempty: bool = True) -> str:
    value = _get(container, key)
    if not isinstance(value, str):
        raise WireError("bad_type", f"{key!r} must be a string")
    if nonempty and not value:
        raise WireError("bad_value", f"{key!r} must not be empty")
    return value


def _int(container: Mapping[str, Any], key: str) -> int:
    """A non-negative integer sent as a decimal string (or, leniently, a JSON integer)."""
    value = _get(container, key)
    if isinstance(value, bool):
        raise WireError("bad_type", f"{key!r} must be an integer string")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        number = int(value)
    else:
        raise WireError("bad_type", f"{key!r} must be an integer string, got {value!r:.40}")
    if number < 0:
        raise WireError("bad_value", f"{key!r} must be >= 0")
    return number


def _opt_int(container: Mapping[str, Any], key: str) -> int | None:
    return _int(container, key) if key in container else None


def _payload(container: Mapping[str, Any], max_payload_bytes: int) -> bytes:
    text = _str(container, "payload", nonempty=False)
    if len(text) > 4 * ((max_payload_bytes + 2) // 3):
        raise WireError("payload_too_large", f"payload over {max_payload_bytes} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError("bad_base64", f"payload is not base64: {exc}") from exc


# --- inbound ------------------------------------------------------------------------------------

def parse_frame(
    text: str | bytes,
    *,
    max_frame_chars: int = MAX_FRAME_CHARS,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
) -> InboundEvent:
    """Parse one WebSocket text frame from Twilio into a typed event."""
    if len(text) > max_frame_chars:
        raise WireError("too_large", f"frame of {len(text)} chars over {max_frame_chars}")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WireError("bad_json", f"frame is not JSON: {exc}") from exc
    except RecursionError:      # "[[[[..." nested deeper than the parser's stack
        raise WireError("bad_json", "frame nests too deeply") from None
    if not isinstance(data, dict):
        raise WireError("not_object", "frame is not a JSON object")
    event = _str(data, "event")
    if event == "media":  # the hot path: 50 frames a second
        return _parse_media(data, max_payload_bytes)
    parser = _PARSERS.get(event)
    if parser is None:
        raise WireError("unknown_event", f"unknown event {event!r:.40}")
    return parser(data)


def _parse_connected(data: Mapping[str, Any]) -> Connected:
    return Connected(
        protocol=_str(data, "protocol", nonempty=False) if "protocol" in data else "",
        version=_str(data, "version", nonempty=False) if "version" in data else "",
    )


def _parse_start(data: Mapping[str, Any]) -> Start:
    start = _obj(data, "start")
    stream_sid = _str(data, "streamSid") if "streamSid" in data else _str(start, "streamSid")
    tracks = _get(start, "tracks")
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise WireError("bad_type", "'tracks' must be a list of strings")
    fmt = _obj(start, "mediaFormat")
    media_format = MediaFormat(
        encoding=_str(fmt, "encoding"),
        sample_rate_hz=_int(fmt, "sampleRate"),
        channels=_int(fmt, "channels"),
    )
    params = start.get("customParameters", {})
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in params.items()
    ):
        raise WireError("bad_type", "'customParameters' must map strings to strings")
    return Start(
        stream_sid=stream_sid,
        call_sid=_str(start, "callSid"),
        account_sid=_str(start, "accountSid"),
        tracks=tuple(tracks),
        media_format=media_format,
        custom_parameters=MappingProxyType(dict(params)),
        sequence=_opt_int(data, "sequenceNumber"),
    )


def _parse_media(data: Mapping[str, Any], max_payload_bytes: int) -> Media:
    media = _obj(data, "media")
    payload = _payload(media, max_payload_bytes)
    if len(payload) > max_payload_bytes:
        raise WireError("payload_too_large", f"payload of {len(payload)} bytes")
    return Media(
        stream_sid=_str(data, "streamSid"),
        sequence=_int(data, "sequenceNumber"),
        chunk=_int(media, "chunk"),
        timestamp_ms=_int(media, "timestamp"),
        payload=payload,
        track=_str(media, "track") if "track" in media else "inbound",
    )


def _parse_dtmf(data: Mapping[str, Any]) -> Dtmf:
    dtmf = _obj(data, "dtmf")
    digit = _str(dtmf, "digit")
    if digit not in DTMF_DIGITS:
        raise WireError("bad_value", f"not a DTMF digit: {digit!r:.10}")
    return Dtmf(
        stream_sid=_str(data, "streamSid"),
        sequence=_opt_int(data, "sequenceNumber"),
        digit=digit,
        track=_str(dtmf, "track") if "track" in dtmf else "inbound_track",
    )


def _parse_mark(data: Mapping[str, Any]) -> Mark:
    return Mark(
        stream_sid=_str(data, "streamSid"),
        sequence=_opt_int(data, "sequenceNumber"),
        name=_str(_obj(data, "mark"), "name"),
    )


def _parse_stop(data: Mapping[str, Any]) -> Stop:
    stop = _obj(data, "stop")
    return Stop(
        stream_sid=_str(data, "streamSid"),
        sequence=_opt_int(data, "sequenceNumber"),
        call_sid=_str(stop, "callSid"),
        account_sid=_str(stop, "accountSid") if "accountSid" in stop else "",
    )


_PARSERS = {
    "connected": _parse_connected,
    "start": _parse_start,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "stop": _parse_stop,
}


def binary_frame_error(data: bytes) -> WireError:
    """The error for a binary WebSocket frame (Twilio only sends text): ``raise`` or log it."""
    return WireError("binary_frame", f"unexpected binary frame of {len(data)} bytes")


# --- outbound -----------------------------------------------------------------------------------

def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def _check_sid(stream_sid: str) -> None:
    if not isinstance(stream_sid, str) or not stream_sid:
        raise ValueError("stream_sid must be a non-empty string")


def media_message(stream_sid: str, ulaw: bytes) -> str:
    """Audio to play: raw 8 kHz mu-law, no header."""
    _check_sid(stream_sid)
    payload = base64.b64encode(ulaw).decode("ascii")
    return _dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    """Twilio echoes this mark when the audio sent before it has played (or on clear)."""
    _check_sid(stream_sid)
    if not isinstance(name, str) or not name:
        raise ValueError("mark name must be a non-empty string")
    return _dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    """Drop all audio Twilio has buffered; it echoes every pending mark."""
    _check_sid(stream_sid)
    return _dumps({"event": "clear", "streamSid": stream_sid})
