"""`appliance simulate`: a Twilio stand-in, for the owner and for tests and benchmarks.

It does what Twilio does on a call: posts the signed /voice-stream webhook, reads the TwiML,
opens the Media Stream WebSocket with a signed upgrade (to the local server, as the tunnel
would), sends `connected` and `start` with the TwiML's parameters, then plays WAV files (one per
caller turn) at real-time pace as 20 ms mu-law frames with silence in between, plays the bot's
audio back at real time, echoes marks when playback reaches them (and all pending marks on
`clear`), can barge in or press a DTMF key, and finally asks the <Connect> action URL what next.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import wave
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from twilio.request_validator import RequestValidator

from .audio.codec import ULAW_FRAME_BYTES, pcm16_to_ulaw, ulaw_to_pcm16
from .audio.resample import Resampler

FRAME_S = 0.020
ReplyDone = Callable[[str, int], bool]   # (call_sid, turns spoken so far) -> may go on
SILENCE = b"\xff" * ULAW_FRAME_BYTES


@dataclass
class CallerTurn:
    wav: Path
    speech_end_s: float | None = None     # where the voice stops in the file (manifest)
    barge_in_after_s: float | None = None  # start this turn this long after the bot starts
    dtmf: str | None = None               # press this key instead of speaking
    before: Callable[[], Awaitable[None]] | None = None   # awaited just before the turn starts


@dataclass
class TurnResult:
    wav: str
    end_of_speech_at: float
    first_reply_frame_at: float | None = None
    first_mark_at: float | None = None
    clear_at: float | None = None

    @property
    def turn_latency_ms(self) -> float | None:
        if self.first_reply_frame_at is None:
            return None
        return round((self.first_reply_frame_at - self.end_of_speech_at) * 1000, 1)

    @property
    def heard_latency_ms(self) -> float | None:
        if self.first_mark_at is None:
            return None
        return round((self.first_mark_at - self.end_of_speech_at) * 1000, 1)


@dataclass
class SimResult:
    call_sid: str
    twiml: str
    closed_by_server: bool = False
    action_twiml: str | None = None
    turns: list[TurnResult] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)   # every message received
    sent_marks: list[str] = field(default_factory=list)
    echoed_marks: list[str] = field(default_factory=list)
    bot_audio: bytearray = field(default_factory=bytearray)      # mu-law as played
    ws_close_code: int | None = None


def read_wav_ulaw(path: Path) -> bytes:
    """A WAV file as 8 kHz mu-law (resampled if needed)."""
    with wave.open(str(path), "rb") as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
        data = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: 16-bit PCM WAV expected")
    samples = np.frombuffer(data, dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate != 8000:
        resampler = Resampler(rate, 8000, dtype="int16")
        samples = np.concatenate([resampler.process(samples), resampler.flush()])
    return pcm16_to_ulaw(samples.astype("<i2").tobytes())


class _Playback:
    """Twilio's side of the bot audio: a buffer played at real time, marks echoed in order."""

    def __init__(self, result: SimResult, send_json) -> None:
        self.queue: list[tuple[str, bytes | str]] = []
        self.result = result
        self.send_json = send_json
        self.playing = False
        self.last_audio_at = 0.0

    def add(self, kind: str, value: bytes | str) -> None:
        self.queue.append((kind, value))

    async def clear(self, stream_sid: str) -> None:
        marks = [v for k, v in self.queue if k == "mark"]
        self.queue.clear()
        for name in marks:
            await self._echo(stream_sid, name)

    async def _echo(self, stream_sid: str, name: str) -> None:
        self.result.echoed_marks.append(name)
        await self.send_json({"event": "mark", "streamSid": stream_sid,
                              "sequenceNumber": "0", "mark": {"name": name}})

    async def run(self, stream_sid: str, on_mark) -> None:
        next_tick = time.monotonic()
        while True:
            if not self.queue:
                self.playing = False
                await asyncio.sleep(0.005)
                next_tick = time.monotonic()
                continue
            kind, value = self.queue.pop(0)
            if kind == "mark":
                await self._echo(stream_sid, value)
                on_mark(value)
                continue
            self.playing = True
            self.result.bot_audio.extend(value)
            self.last_audio_at = time.monotonic()
            next_tick += FRAME_S
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))


async def simulate_call(server: str, public_url: str, auth_token: str, turns: list[CallerTurn],
                        caller: str = "+15550001111", to: str = "+15550002222",
                        greeting_timeout_s: float = 20.0, reply_timeout_s: float = 30.0,
                        sign: bool = True, tail_s: float = 1.0,
                        reply_done: ReplyDone | None = None,
                        account_sid: str = "AC" + "0" * 32) -> SimResult:
    """Run one call against a running appliance. `server` is where to connect (the tunnel's
    target, e.g. http://127.0.0.1:1337); `public_url` is what Twilio would have called.

    The caller speaks again once the bot has been quiet for 0.6 s; `reply_done(call_sid,
    turns_spoken)`, when given, must also be true first (a benchmark asks the server's database
    whether the reply to the last turn was stored, so a slow answer after a "one moment" filler
    is not talked over)."""
    validator = RequestValidator(auth_token or "unsigned")
    call_sid = "CA" + secrets.token_hex(16)
    params = {"CallSid": call_sid, "AccountSid": account_sid, "From": caller, "To": to,
              "CallStatus": "ringing", "Direction": "inbound"}

    def headers(url: str, data: dict) -> dict[str, str]:
        return {"X-Twilio-Signature": validator.compute_signature(url, data)} if sign else {}

    async with aiohttp.ClientSession() as http:
        url = public_url + "/voice-stream"
        async with http.post(server + "/voice-stream", data=params,
                             headers=headers(url, params)) as resp:
            body = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"/voice-stream answered {resp.status}: {body.strip()}")
        result = SimResult(call_sid=call_sid, twiml=body)
        root = ET.fromstring(body)
        stream = root.find("./Connect/Stream")
        if stream is None:
            return result
        connect = root.find("./Connect")
        action = connect.get("action") if connect is not None else None
        custom = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        stream_url = stream.get("url")
        local_ws = server.replace("http", "ws", 1) + urlsplit(stream_url).path
        async with http.ws_connect(local_ws, headers=headers(stream_url, {})) as ws:
            await _run_stream(ws, result, custom, call_sid, turns, greeting_timeout_s,
                              reply_timeout_s, tail_s, reply_done)
        if result.closed_by_server and action:
            path = urlsplit(action).path
            data = {"CallSid": call_sid, "AccountSid": params["AccountSid"], "From": caller,
                    "To": to, "CallStatus": "in-progress"}
            try:
                async with http.post(server + path, data=data,
                                     headers=headers(action, data)) as r:
                    result.action_twiml = await r.text()
            except aiohttp.ClientError:    # the appliance is gone (shut down)
                result.action_twiml = None
    return result


async def _run_stream(ws, result: SimResult, custom: dict, call_sid: str,
                      turns: list[CallerTurn], greeting_timeout_s: float,
                      reply_timeout_s: float, tail_s: float,
                      reply_done: ReplyDone | None = None) -> None:
    stream = _CallerStream(ws, result, call_sid, reply_done)
    await stream.start(custom)
    receiver = asyncio.create_task(stream.receive())
    player = asyncio.create_task(stream.playback.run(stream.stream_sid, stream.on_mark))
    try:
        await stream.converse(turns, greeting_timeout_s, reply_timeout_s, tail_s)
    finally:
        await stream.hang_up()
        player.cancel()
        await asyncio.wait([receiver], timeout=5)
        receiver.cancel()
        await asyncio.gather(player, receiver, return_exceptions=True)
    result.turns = stream.current


class _CallerStream:
    """The caller's side of one Media Stream, on one frame schedule for the whole stream (as a
    phone line keeps: pacing each burst from its own start made media timestamps lag real time
    by ~1 s per reply)."""

    def __init__(self, ws, result: SimResult, call_sid: str, reply_done: ReplyDone | None
                 ) -> None:
        self.ws, self.result, self.call_sid, self.reply_done = ws, result, call_sid, reply_done
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.seq = 0
        self.media_ts = 0
        self.next_frame_at = time.monotonic()
        self.hung_up = False
        self.current: list[TurnResult] = []
        self.bot_started = asyncio.Event()     # bot audio arrived since the last reset
        self.playback = _Playback(result, self.send_json)

    async def send_json(self, message: dict) -> None:
        self.seq += 1
        message.setdefault("sequenceNumber", str(self.seq))
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(message))

    def on_mark(self, name: str) -> None:
        if self.current and self.current[-1].first_mark_at is None:
            self.current[-1].first_mark_at = time.monotonic()

    async def start(self, custom: dict) -> None:
        await self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send_json({
            "event": "start", "streamSid": self.stream_sid,
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": self.stream_sid,
                      "callSid": self.call_sid, "tracks": ["inbound"],
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1},
                      "customParameters": custom}})

    async def receive(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            data["_at"] = time.monotonic()
            self.result.events.append(data)
            await self._on_message(data)
        self.result.closed_by_server = not self.hung_up
        self.result.ws_close_code = self.ws.close_code

    async def _on_message(self, data: dict) -> None:
        event, turn = data.get("event"), (self.current[-1] if self.current else None)
        if event == "media":
            self.playback.add("audio", base64.b64decode(data["media"]["payload"]))
            self.bot_started.set()
            if turn and turn.first_reply_frame_at is None:
                turn.first_reply_frame_at = data["_at"]
        elif event == "mark":
            self.result.sent_marks.append(data["mark"]["name"])
            self.playback.add("mark", data["mark"]["name"])
        elif event == "clear":
            if turn and turn.clear_at is None:
                turn.clear_at = data["_at"]
            await self.playback.clear(self.stream_sid)

    async def send_frames(self, data: bytes) -> None:
        next_tick = max(self.next_frame_at, time.monotonic() - 0.1)
        for i in range(0, len(data), ULAW_FRAME_BYTES):
            frame = data[i:i + ULAW_FRAME_BYTES].ljust(ULAW_FRAME_BYTES, b"\xff")
            await self.send_json({"event": "media", "streamSid": self.stream_sid,
                                  "media": {"track": "inbound",
                                            "chunk": str(self.media_ts // 20 + 1),
                                            "timestamp": str(self.media_ts),
                                            "payload": base64.b64encode(frame).decode()}})
            self.media_ts += 20
            next_tick += FRAME_S
            self.next_frame_at = next_tick
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    async def silence_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline and not self.ws.closed:
            await self.send_frames(SILENCE)

    def bot_quiet(self, min_quiet_s: float = 0.6) -> bool:
        return (self.bot_started.is_set() and not self.playback.queue
                and time.monotonic() - self.playback.last_audio_at > min_quiet_s
                and (self.reply_done is None
                     or self.reply_done(self.call_sid, len(self.current))))

    async def converse(self, turns: list[CallerTurn], greeting_timeout_s: float,
                       reply_timeout_s: float, tail_s: float) -> None:
        await self.silence_until(self.bot_quiet, greeting_timeout_s)   # the greeting
        self.bot_started.clear()
        for index, turn in enumerate(turns):
            if self.ws.closed:
                break
            if turn.dtmf:
                await self._press(turn.dtmf, reply_timeout_s)
                continue
            if turn.before is not None:
                await turn.before()
            following = turns[index + 1] if index + 1 < len(turns) else None
            await self._speak(turn, following, reply_timeout_s)
        await self.silence_until(lambda: False, tail_s)

    async def _press(self, digit: str, reply_timeout_s: float) -> None:
        self.current.append(TurnResult(f"dtmf:{digit}", time.monotonic()))
        await self.send_json({"event": "dtmf", "streamSid": self.stream_sid,
                              "dtmf": {"track": "inbound_track", "digit": digit}})
        await self.silence_until(lambda: self.ws.closed, reply_timeout_s)

    async def _speak(self, turn: CallerTurn, following: CallerTurn | None,
                     reply_timeout_s: float) -> None:
        audio = read_wav_ulaw(turn.wav)
        end_s = turn.speech_end_s if turn.speech_end_s is not None else len(audio) / 8000
        self.current.append(TurnResult(turn.wav.name, time.monotonic() + end_s))
        self.bot_started.clear()
        await self.send_frames(audio)
        if following is not None and following.barge_in_after_s is not None:
            # speak over the bot: wait for its reply to start, then a little longer
            await self.silence_until(self.bot_started.is_set, reply_timeout_s)
            await self.silence_until(lambda: False, following.barge_in_after_s)
        else:
            await self.silence_until(self.bot_quiet, reply_timeout_s)

    async def hang_up(self) -> None:
        if not self.ws.closed:
            self.hung_up = True
            await self.send_json({"event": "stop", "streamSid": self.stream_sid,
                                  "stop": {"accountSid": "AC" + "0" * 32,
                                           "callSid": self.call_sid}})
            await self.ws.close()


def save_wav(path: Path, ulaw: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(ulaw_to_pcm16(bytes(ulaw)))


# ------------------------------------------------------------------------------------------------
# The command
