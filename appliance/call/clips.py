"""The <Play> audio of <Gather> calls: short-lived, signed, single-use clip URLs.

A reply piece (a sentence, a fixed phrase) becomes a `Clip` the moment its text exists; Piper
synthesises it in a worker thread, one clip after the other per call, while Twilio already has
the URL. `GET /gather-audio/<CallSid>/<clip id>.wav?e=<expiry>&s=<signature>` waits for the
audio and serves it once as an 8 kHz mu-law WAV (`audio/wav`, which <Play> accepts and Twilio
plays without transcoding).

Twilio sends no signature and no call parameters with a <Play> fetch, so the URL carries its
own: HMAC-SHA256, keyed with a secret made at start-up, over the call SID, the clip id and the
expiry (unix seconds). A forged or expired URL is refused (403), a clip already served, dropped
or unknown is gone (404). Serving writes nothing anywhere. Clips of a call are dropped when its
status callback says it ended, and any clip when it expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

log = logging.getLogger(__name__)
CLIP_TTL_S = 300.0          # a URL is valid this long (a long reply is several <Play>s)
SERVE_WAIT_S = 12.0         # a fetch waits this long for synthesis (Twilio waits 15 s)
ROUTE = "/gather-audio/{call_sid}/{clip_id}.wav"
Render = Callable[[str, str | None], Awaitable[bytes]]   # (text, language) -> mu-law 8 kHz


def mulaw_wav(ulaw: bytes, rate_hz: int = 8000) -> bytes:
    """A WAVE file (format 7, G.711 mu-law, mono, 8 bit) around raw mu-law bytes."""
    fmt = struct.pack("<HHIIHHH", 7, 1, rate_hz, rate_hz, 1, 8, 0)
    fact = struct.pack("<I", len(ulaw))
    pad = b"\x00" if len(ulaw) % 2 else b""
    chunks = (b"fmt " + struct.pack("<I", len(fmt)) + fmt
              + b"fact" + struct.pack("<I", len(fact)) + fact
              + b"data" + struct.pack("<I", len(ulaw)) + ulaw + pad)
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


class ClipSigner:
    """HMAC over (call SID, clip id, expiry); the key never leaves the process."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def sign(self, call_sid: str, clip_id: str, expires: int) -> str:
        message = f"{call_sid}\n{clip_id}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:40]

    def valid(self, call_sid: str, clip_id: str, expires: int, signature: str) -> bool:
        return hmac.compare_digest(self.sign(call_sid, clip_id, expires), signature)


@dataclass
class Clip:
    call_sid: str
    clip_id: str
    text: str
    expires: int                            # unix seconds
    audio: asyncio.Future[bytes] = field(repr=False)
    ready_at: float | None = None           # perf_counter when the audio existed
    served_at: float | None = None          # perf_counter when it was handed to Twilio


class ClipStore:
    """Every clip not yet served. `render` is the voice (PhoneSpeech.synthesize/render)."""

    def __init__(self, signer: ClipSigner, clock: Callable[[], float] = time.time,
                 ttl_s: float | None = None) -> None:
        self.signer, self._clock = signer, clock
        self.ttl_s = CLIP_TTL_S if ttl_s is None else ttl_s
        self._clips: dict[tuple[str, str], Clip] = {}
        self._tails: dict[str, asyncio.Future[bytes]] = {}   # call SID -> its last synthesis
        self._tasks: set[asyncio.Task[None]] = set()
        self.observers: list[Callable[[Clip], None]] = []     # told when a clip is served

    def add(self, call_sid: str, text: str, language: str | None, render: Render) -> Clip:
        """A clip for `text`, synthesised after the call's earlier clips (one at a time)."""
        self._expire()
        loop = asyncio.get_running_loop()
        clip = Clip(call_sid, secrets.token_urlsafe(12), text,
                    int(self._clock() + self.ttl_s), loop.create_future())
        self._clips[(call_sid, clip.clip_id)] = clip
        before = self._tails.get(call_sid)
        self._tails[call_sid] = clip.audio
        task = asyncio.create_task(self._synthesise(clip, before, text, language, render))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return clip

    async def _synthesise(self, clip: Clip, before: asyncio.Future[bytes] | None, text: str,
                          language: str | None, render: Render) -> None:
        try:
            if before is not None:
                await asyncio.wait([before])
            audio = await render(text, language)
        except asyncio.CancelledError:
            if not clip.audio.done():
                clip.audio.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - the fetch answers 503, the call goes on
            log.exception("synthesising a <Play> clip failed")
            if not clip.audio.done():
                clip.audio.set_exception(exc)
                clip.audio.exception()      # retrieved: the fetch (if any) answers 503
            return
        if not clip.audio.done():
            clip.ready_at = time.perf_counter()
            clip.audio.set_result(audio)

    def path(self, clip: Clip) -> str:
        signature = self.signer.sign(clip.call_sid, clip.clip_id, clip.expires)
        return (f"/gather-audio/{clip.call_sid}/{clip.clip_id}.wav"
                f"?e={clip.expires}&s={signature}")

    def discard(self, clip: Clip) -> None:
        """A clip that will never be played (a speculative reply that was cancelled)."""
        self._clips.pop((clip.call_sid, clip.clip_id), None)
        if not clip.audio.done():
            clip.audio.cancel()

    def drop_call(self, call_sid: str) -> None:
        for clip in [c for c in self._clips.values() if c.call_sid == call_sid]:
            self.discard(clip)
        self._tails.pop(call_sid, None)

    def pending(self) -> int:
        return len(self._clips)

    def _expire(self) -> None:
        now = self._clock()
        for clip in [c for c in self._clips.values() if c.expires < now]:
            self.discard(clip)
        for sid in [s for s, f in self._tails.items() if f.done()]:
            del self._tails[sid]

    def claim(self, call_sid: str, clip_id: str, expires: str, signature: str) -> Clip:
        """The clip a URL names, taken out (single use); HTTP 403 / 404 otherwise."""
        try:
            expiry = int(expires)
        except ValueError:
            raise web.HTTPForbidden(text="forbidden\n") from None
        if not self.signer.valid(call_sid, clip_id, expiry, signature):
            log.warning("refused a <Play> clip URL with a bad signature")
            raise web.HTTPForbidden(text="forbidden\n")
        if expiry < self._clock():
            log.warning("refused an expired <Play> clip URL")
            raise web.HTTPForbidden(text="expired\n")
        clip = self._clips.pop((call_sid, clip_id), None)
        if clip is None:
            raise web.HTTPNotFound(text="no such clip (served already, or dropped)\n")
        return clip

    async def serve(self, request: web.Request) -> web.Response:
        info, query = request.match_info, request.query
        clip = self.claim(info["call_sid"], info["clip_id"], query.get("e", ""),
                          query.get("s", ""))
        done, _ = await asyncio.wait([clip.audio], timeout=SERVE_WAIT_S)
        if not done or clip.audio.cancelled():
            raise web.HTTPNotFound(text="no audio (dropped, or too slow)\n")
        if clip.audio.exception() is not None:
            raise web.HTTPServiceUnavailable(text="no audio\n")
        audio = clip.audio.result()
        clip.served_at = time.perf_counter()
        for observer in self.observers:
            observer(clip)
        return web.Response(body=mulaw_wav(audio), content_type="audio/wav",
                            headers={"Cache-Control": "no-store"})

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def add_routes(app: web.Application, clips: ClipStore) -> None:
    app.router.add_get(ROUTE, clips.serve)
