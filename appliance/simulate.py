"""`appliance simulate`: a Twilio stand-in, for the owner and for tests and benchmarks.

It does what Twilio does on a call: posts the signed /voice-stream webhook, reads the TwiML,
opens the Media Stream WebSocket with a signed upgrade (to the local server, as the tunnel
would), sends `connected` and `start` with the TwiML's parameters, then plays WAV files (one per
caller turn) at real-time pace as 20 ms mu-law frames with silence in between, plays the bot's
audio back at real time, echoes marks when playback reaches them (and all pending marks on
`clear`), can barge in or press a DTMF key, and finally asks the <Connect> action URL what next.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import time
import wave
import xml.etree.ElementTree as ET
from collections.abc import Callable
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
                        reply_done: ReplyDone | None = None) -> SimResult:
    """Run one call against a running appliance. `server` is where to connect (the tunnel's
    target, e.g. http://127.0.0.1:1337); `public_url` is what Twilio would have called.

    The caller speaks again once the bot has been quiet for 0.6 s; `reply_done(call_sid,
    turns_spoken)`, when given, must also be true first (a benchmark asks the server's database
    whether the reply to the last turn was stored, so a slow answer after a "one moment" filler
    is not talked over)."""
    validator = RequestValidator(auth_token or "unsigned")
    call_sid = "CA" + secrets.token_hex(16)
    params = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": caller, "To": to,
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
    stream_sid = "MZ" + secrets.token_hex(16)
    seq = 0

    async def send_json(message: dict) -> None:
        nonlocal seq
        seq += 1
        message.setdefault("sequenceNumber", str(seq))
        if not ws.closed:
            await ws.send_str(json.dumps(message))

    current: list[TurnResult] = []
    bot_started = asyncio.Event()     # bot audio arrived since the last reset

    def on_mark(name: str) -> None:
        if current and current[-1].first_mark_at is None:
            current[-1].first_mark_at = time.monotonic()

    playback = _Playback(result, send_json)

    async def receive() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            data["_at"] = time.monotonic()
            result.events.append(data)
            event = data.get("event")
            if event == "media":
                payload = base64.b64decode(data["media"]["payload"])
                playback.add("audio", payload)
                bot_started.set()
                if current and current[-1].first_reply_frame_at is None:
                    current[-1].first_reply_frame_at = data["_at"]
            elif event == "mark":
                result.sent_marks.append(data["mark"]["name"])
                playback.add("mark", data["mark"]["name"])
            elif event == "clear":
                if current and current[-1].clear_at is None:
                    current[-1].clear_at = data["_at"]
                await playback.clear(stream_sid)
        result.closed_by_server = not hung_up
        result.ws_close_code = ws.close_code

    media_ts = 0
    hung_up = False

    # One frame schedule for the whole stream, as a phone line keeps: pacing each call of
    # send_frames from its own start made media timestamps lag real time by ~1 s per reply.
    schedule = {"next": time.monotonic()}

    async def send_frames(data: bytes) -> None:
        nonlocal media_ts
        next_tick = max(schedule["next"], time.monotonic() - 0.1)
        for i in range(0, len(data), ULAW_FRAME_BYTES):
            frame = data[i:i + ULAW_FRAME_BYTES].ljust(ULAW_FRAME_BYTES, b"\xff")
            await send_json({"event": "media", "streamSid": stream_sid,
                             "media": {"track": "inbound", "chunk": str(media_ts // 20 + 1),
                                       "timestamp": str(media_ts),
                                       "payload": base64.b64encode(frame).decode()}})
            media_ts += 20
            next_tick += FRAME_S
            schedule["next"] = next_tick
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    async def silence_until(predicate, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline and not ws.closed:
            await send_frames(SILENCE)

    await send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    await send_json({"event": "start", "streamSid": stream_sid,
                     "start": {"accountSid": "AC" + "0" * 32, "streamSid": stream_sid,
                               "callSid": call_sid, "tracks": ["inbound"],
                               "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                               "channels": 1},
                               "customParameters": custom}})
    receiver = asyncio.create_task(receive())
    player = asyncio.create_task(playback.run(stream_sid, on_mark))

    def bot_quiet(min_quiet_s: float = 0.6):
        return lambda: (bot_started.is_set() and not playback.queue and
                        time.monotonic() - playback.last_audio_at > min_quiet_s and
                        (reply_done is None or reply_done(call_sid, len(current))))

    try:
        # the greeting
        await silence_until(bot_quiet(), greeting_timeout_s)
        bot_started.clear()
        for index, turn in enumerate(turns):
            if ws.closed:
                break
            if turn.dtmf:
                current.append(TurnResult(f"dtmf:{turn.dtmf}", time.monotonic()))
                await send_json({"event": "dtmf", "streamSid": stream_sid,
                                 "dtmf": {"track": "inbound_track", "digit": turn.dtmf}})
                await silence_until(lambda: ws.closed, reply_timeout_s)
                continue
            audio = read_wav_ulaw(turn.wav)
            end_s = turn.speech_end_s if turn.speech_end_s is not None else len(audio) / 8000
            started = time.monotonic()
            current.append(TurnResult(turn.wav.name, started + end_s))
            bot_started.clear()
            await send_frames(audio)
            following = turns[index + 1] if index + 1 < len(turns) else None
            if following is not None and following.barge_in_after_s is not None:
                # speak over the bot: wait for its reply to start, then a little longer
                await silence_until(bot_started.is_set, reply_timeout_s)
                await silence_until(lambda: False, following.barge_in_after_s)
            else:
                await silence_until(bot_quiet(), reply_timeout_s)
        await silence_until(lambda: False, tail_s)
    finally:
        if not ws.closed:
            hung_up = True
            await send_json({"event": "stop", "streamSid": stream_sid,
                             "stop": {"accountSid": "AC" + "0" * 32, "callSid": call_sid}})
            await ws.close()
        player.cancel()
        await asyncio.wait([receiver], timeout=5)
        receiver.cancel()
        await asyncio.gather(player, receiver, return_exceptions=True)
    result.turns = current


def save_wav(path: Path, ulaw: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(ulaw_to_pcm16(bytes(ulaw)))


# ------------------------------------------------------------------------------------------------
# The command


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", parents=[subparsers.common],
                              help="call the running appliance as Twilio would, with WAV files")
    p.add_argument("wavs", nargs="+", type=Path, help="one WAV per caller turn")
    p.add_argument("--server", default=None, help="where the appliance listens "
                                                  "(default: from the config)")
    p.add_argument("--caller", default="+15550001111")
    p.add_argument("--save", type=Path, help="write the bot's audio to this WAV file")
    p.add_argument("--dtmf", help="press this key after the turns")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    server = args.server or f"http://127.0.0.1:{settings.server.port}"
    public = settings.server.public_url or server
    turns = [CallerTurn(w, speech_end_s=_manifest_end(w)) for w in args.wavs]
    if args.dtmf:
        turns.append(CallerTurn(Path("-"), dtmf=args.dtmf))
    result = asyncio.run(simulate_call(server, public, settings.twilio.auth_token, turns,
                                       caller=args.caller,
                                       sign=settings.twilio.validate_signatures))
    for turn in result.turns:
        print(f"{turn.wav}: turn_latency {turn.turn_latency_ms} ms, "
              f"heard_latency {turn.heard_latency_ms} ms (as the caller side saw it)")
    _print_stored(settings, result.call_sid)
    if result.action_twiml:
        print(f"after the stream: {result.action_twiml}")
    if args.save:
        save_wav(args.save, result.bot_audio)
        print(f"bot audio saved to {args.save}")
    return 0


def _manifest_end(wav: Path) -> float | None:
    manifest = wav.parent / "manifest.json"
    if manifest.is_file():
        for entry in json.loads(manifest.read_text()):
            if entry.get("file") == wav.name:
                return entry.get("speech_end_s")
    return None


def _print_stored(settings, call_sid: str) -> None:
    from .store.db import connect

    conn = connect(settings.storage.database)
    try:
        rows = conn.execute(
            "SELECT t.* FROM call_turns t JOIN calls c ON c.id = t.call_id WHERE c.call_sid = ? "
            "ORDER BY t.turn_index", (call_sid,)).fetchall()
        outcome = conn.execute("SELECT outcome FROM calls WHERE call_sid = ?",
                               (call_sid,)).fetchone()
    finally:
        conn.close()
    for r in rows:
        print(f"turn {r['turn_index']}: caller said {r['transcript']!r}")
        print(f"   bot said {r['reply_text']!r}; heard {r['heard_text']!r}"
              f"{' (interrupted)' if r['interrupted'] else ''}")
        print(f"   turn_latency {r['turn_latency_ms']} ms, heard_latency {r['heard_latency_ms']}"
              f" ms: endpoint_wait {r['endpoint_wait_ms']}, stt {r['stt_ms']}, llm_ttft "
              f"{r['llm_ttft_ms']}, first_clause {r['first_clause_ms']}, tts_first_audio "
              f"{r['tts_first_audio_ms']}, overhead {r['overhead_ms']}")
    if outcome:
        print(f"call outcome: {outcome['outcome']}")
