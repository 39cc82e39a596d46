"""The Twilio stand-in of `appliance simulate`, with Twilio's media clock.

`appliance.call.simulate` paces each `send_frames()` call from its own start, so during silence
(sent one frame per call) every frame adds its sending overhead to the next one: the media
timestamps fall behind real time, ~1-2 ms per frame on a busy 2-core box, about a second over a
10 s reply. Twilio's timestamps follow real time. The session converts the media clock to wall
time with the smallest offset seen, so with the drifting stand-in its end_of_speech lands up to a
second early and the stored turn_latency and overhead_ms grow by that much.

Until simulate.py keeps one schedule for the whole stream, the benchmark runs the same stream
logic with one schedule (frame k is due at t0 + 20 ms * k, whatever was sent before), which is
what `install()` puts in place: `simulate_call` is simulate's own (webhook, signatures, TwiML,
the <Connect> action); only its `_run_stream` is replaced, in this process, while a benchmark
rig runs (bench/harness.py).

One addition: simulate's caller speaks again once the bot has been quiet for 0.6 s. When a reply
starts with a "one moment" filler and the answer takes longer than that (the local model), the
caller would talk over the answer. `reply_done(call_sid, turns_spoken) -> bool`, when set, must
also be true before the caller goes on (the benchmark asks the server's database whether the
reply to the last turn has been stored, i.e. fully played).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Callable

import aiohttp

from appliance.audio.codec import ULAW_FRAME_BYTES
from appliance.call import simulate as _sim
from appliance.call.simulate import (
    FRAME_S,
    SILENCE,
    CallerTurn,
    SimResult,
    TurnResult,
    _Playback,
    read_wav_ulaw,
    simulate_call,
)

__all__ = ["CallerTurn", "SimResult", "simulate_call"]

reply_done: Callable[[str, int], bool] | None = None


async def _run_stream_steady(ws, result: SimResult, custom: dict, call_sid: str,
                             turns: list[CallerTurn], greeting_timeout_s: float,
                             reply_timeout_s: float, tail_s: float) -> None:
    stream_sid = "MZ" + secrets.token_hex(16)
    seq = 0

    async def send_json(message: dict) -> None:
        nonlocal seq
        seq += 1
        message.setdefault("sequenceNumber", str(seq))
        if not ws.closed:
            await ws.send_str(json.dumps(message))

    current: list[TurnResult] = []
    bot_started = asyncio.Event()

    def on_mark(name: str) -> None:
        if current and current[-1].first_mark_at is None:
            current[-1].first_mark_at = time.monotonic()

    playback = _Playback(result, send_json)
    hung_up = False

    async def receive() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            data["_at"] = time.monotonic()
            result.events.append(data)
            event = data.get("event")
            if event == "media":
                playback.add("audio", base64.b64decode(data["media"]["payload"]))
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

    clock = {"t0": None, "frames": 0}

    def next_due() -> float:
        if clock["t0"] is None:
            clock["t0"] = time.monotonic()
        return clock["t0"] + clock["frames"] * FRAME_S

    async def send_frames(data: bytes) -> None:
        for i in range(0, len(data), ULAW_FRAME_BYTES):
            frame = data[i:i + ULAW_FRAME_BYTES].ljust(ULAW_FRAME_BYTES, b"\xff")
            delay = next_due() - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            media_ts = clock["frames"] * 20
            await send_json({"event": "media", "streamSid": stream_sid,
                             "media": {"track": "inbound", "chunk": str(media_ts // 20 + 1),
                                       "timestamp": str(media_ts),
                                       "payload": base64.b64encode(frame).decode()}})
            clock["frames"] += 1

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
            started = next_due()          # when the utterance's first frame is due
            current.append(TurnResult(turn.wav.name, started + end_s))
            bot_started.clear()
            await send_frames(audio)
            following = turns[index + 1] if index + 1 < len(turns) else None
            if following is not None and following.barge_in_after_s is not None:
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


_original = _sim._run_stream


def install() -> None:
    _sim._run_stream = _run_stream_steady


def uninstall() -> None:
    global reply_done
    _sim._run_stream = _original
    reply_done = None
