"""A seeded mutator of Twilio Media Streams frames (no dependency: random.Random is enough for
a protocol this small, and a failure replays from its seed and index).

`FrameFuzzer.next()` returns (kind, frame): frame is a str (a text frame) or bytes (a binary
frame). Kinds: valid media of any length, bad base64, wrong types, truncated JSON, huge
frames, binary frames, non-objects, deep nesting, unknown events, stray marks and DTMF,
out-of-order sequence numbers, a second start or connected, and (rarely) stop.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable

Frame = str | bytes


class FrameFuzzer:
    def __init__(self, seed: int, stream_sid: str, call_sid: str) -> None:
        self.rng = random.Random(seed)
        self.stream_sid, self.call_sid = stream_sid, call_sid
        self.seq = 2
        weighted: list[tuple[int, Callable[[], Frame]]] = [
            (30, self.media_any_length), (8, self.media_out_of_order), (6, self.bad_base64),
            (6, self.wrong_types), (6, self.truncated), (4, self.binary), (3, self.non_object),
            (1, self.deep_nesting), (4, self.unknown_event), (8, self.stray_mark),
            (5, self.dtmf), (2, self.second_start), (3, self.missing_fields),
            (1, self.huge_payload), (1, self.oversized_frame)]
        self.kinds = [f for w, f in weighted for _ in range(w)]

    def next(self) -> tuple[str, Frame]:
        make = self.rng.choice(self.kinds)
        self.seq += 1
        return make.__name__, make()

    # -- valid shapes ----------------------------------------------------------------------
    def _media(self, payload: str, seq: int | None = None, **media: object) -> str:
        body = {"payload": payload, "timestamp": str(self.seq * 20), "chunk": str(self.seq),
                "track": "inbound", **media}
        return json.dumps({"event": "media", "sequenceNumber": str(seq or self.seq),
                           "streamSid": self.stream_sid, "media": body})

    def media_any_length(self) -> str:
        size = self.rng.choice([0, 1, 7, 159, 160, 161, 320, 999, self.rng.randrange(0, 4000)])
        return self._media(base64.b64encode(self.rng.randbytes(size)).decode())

    def media_out_of_order(self) -> str:
        return self._media(base64.b64encode(b"\xff" * 160).decode(),
                           seq=self.rng.choice([1, 0, self.seq - 50, 10**9]),
                           timestamp=str(self.rng.choice([-20, 0, 10**12])))

    # -- broken ----------------------------------------------------------------------------
    def bad_base64(self) -> str:
        return self._media(self.rng.choice(["***", "QUJD=", "=", "QQ", "Zm9v\n" * 40, "é"]))

    def wrong_types(self) -> str:
        value = self.rng.choice([None, 1, 2.5, [], {}, True, "x" * 30])
        field = self.rng.choice(["payload", "timestamp", "chunk", "track"])
        frame = json.loads(self.media_any_length())
        frame["media"][field] = value
        if self.rng.random() < 0.3:
            frame[self.rng.choice(["event", "sequenceNumber", "streamSid", "media"])] = value
        return json.dumps(frame)

    def truncated(self) -> str:
        text = self.media_any_length()
        return text[:self.rng.randrange(0, len(text))]

    def binary(self) -> bytes:
        return self.rng.randbytes(self.rng.choice([0, 1, 160, 2000]))

    def non_object(self) -> str:
        return self.rng.choice(["[]", "null", "1", '"media"', "[{}]", "true", ""])

    def deep_nesting(self) -> str:
        depth = self.rng.choice([100, 5000, 20000])
        return "[" * depth + "]" * depth

    def unknown_event(self) -> str:
        return json.dumps({"event": self.rng.choice(["party", "", "MEDIA", "clear", "start2"]),
                           "streamSid": self.stream_sid})

    def missing_fields(self) -> str:
        frame = json.loads(self.media_any_length())
        del frame[self.rng.choice(["media", "event", "streamSid"])]
        return json.dumps(frame)

    def huge_payload(self) -> str:
        """A media payload over the wire limit, inside a frame under the socket's."""
        return self._media("A" * self.rng.choice([20_000, 60_000]))

    def oversized_frame(self) -> str:
        """Over the socket's max message size: the server closes this connection."""
        return self._media("A" * 70_000)

    # -- valid but out of place --------------------------------------------------------------
    def stray_mark(self) -> str:
        mark = self.rng.choice([{"name": "never-sent"}, {"name": ""}, {}, {"name": 5}])
        return json.dumps({"event": "mark", "sequenceNumber": str(self.seq),
                           "streamSid": self.stream_sid, "mark": mark})

    def dtmf(self) -> str:
        digit = self.rng.choice(["1", "5", "#", "*", "", "12", 7])   # not the operator key
        return json.dumps({"event": "dtmf", "sequenceNumber": str(self.seq),
                           "streamSid": self.stream_sid,
                           "dtmf": {"track": "inbound_track", "digit": digit}})

    def second_start(self) -> str:
        if self.rng.random() < 0.5:
            return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        return json.dumps(start_frame(self.stream_sid, "CA" + "f" * 32, "stolen-token"))


def start_frame(stream_sid: str, call_sid: str, token: str) -> dict:
    return {"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
            "start": {"streamSid": stream_sid, "callSid": call_sid, "accountSid": "AC" + "0" * 32,
                      "tracks": ["inbound"], "customParameters": {"token": token},
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1}}}
