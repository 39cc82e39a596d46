"""Media of inbound messages: what kind it is, the authenticated download from Twilio, and
voice notes decoded (PyAV, in a worker thread) and transcribed on the box (faster-whisper).

Twilio media URLs need HTTP basic auth (account SID + auth token). The credentials are only
ever sent to Twilio's own hosts (or the configured API base URL in tests); aiohttp drops them
when Twilio redirects to its CDN. Decoding is bounded: a small file cannot expand into hours of
audio in memory, nor keep the decoder busy past `decode_timeout_s`. Only the containers voice
notes come in (OGG/Opus, MP4/M4A, AMR, MP3, WAV) are decoded, recognised by their first bytes
and opened with that demuxer alone: the bytes never reach FFmpeg's other demuxers.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from ..config import Settings
from .twilio_rest import basic_auth
from .rows import MediaResult, MediaRow

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000


def media_kind(content_type: str) -> str:
    """voice, image, video, document or other, from a MediaContentTypeN value."""
    main = content_type.split(";")[0].strip().lower()
    if main.startswith("audio/"):
        return "voice"
    if main.startswith("image/"):
        return "image"
    if main.startswith("video/"):
        return "video"
    if main.startswith(("application/", "text/")):
        return "document"
    return "other"


@dataclass(frozen=True)
class MediaLimits:
    max_bytes: int = 16 * 1024 * 1024    # WhatsApp's own limit for audio
    max_audio_s: float = 300.0           # longer voice notes are declined politely
    download_timeout_s: float = 30.0
    download_attempts: int = 3
    retry_delay_s: float = 1.0
    decode_timeout_s: float = 20.0       # wall clock for decoding one note


class MediaError(Exception):
    """``code``: untrusted_url, download_failed (worth retrying), download_refused (4xx),
    too_large, unsupported_format, decode_failed, decode_timeout, too_long."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"media {code}: {message}")
        self.code = code


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.netloc or "").lower()


class MediaFetcher:
    """Downloads Twilio media with the account's credentials. ``start`` inside the loop."""

    def __init__(self, settings: Settings, limits: MediaLimits = MediaLimits()) -> None:
        t = settings.twilio
        self._auth = (basic_auth(t.account_sid, t.auth_token)
                      if t.account_sid and t.auth_token else None)
        self._base = _origin(t.api_base_url) if t.api_base_url else None
        self.limits = limits
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.limits.download_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def trusted(self, url: str) -> bool:
        """Only Twilio (https, *.twilio.com) or the configured API stand-in gets credentials."""
        scheme, netloc = _origin(url)
        if self._base is not None and (scheme, netloc) == self._base:
            return True
        host = netloc.rsplit("@", 1)[-1].split(":")[0]
        return scheme == "https" and (host == "twilio.com" or host.endswith(".twilio.com"))

    async def download(self, url: str) -> bytes:
        if self._session is None:
            raise RuntimeError("MediaFetcher.start() was not awaited")
        if not self.trusted(url):
            raise MediaError("untrusted_url", f"{_origin(url)[1] or url!r} is not a Twilio host")
        if self._auth is None:
            raise MediaError("download_failed", "no Twilio account SID / auth token configured")
        last = ""
        for attempt in range(1, self.limits.download_attempts + 1):
            try:
                return await self._get(url)
            except MediaError as exc:
                if exc.code != "download_failed" or attempt == self.limits.download_attempts:
                    raise
                last = str(exc)
            log.info("media download attempt %d failed (%s); retrying", attempt, last)
            await asyncio.sleep(self.limits.retry_delay_s * attempt)
        raise MediaError("download_failed", last)  # pragma: no cover - loop always returns

    async def _get(self, url: str) -> bytes:
        assert self._session is not None
        try:
            # aiohttp drops the Authorization header if Twilio redirects to another origin
            async with self._session.get(url, headers={"Authorization": self._auth or ""}
                                         ) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise MediaError("download_failed", f"HTTP {resp.status}")
                if resp.status != 200:
                    # 401/403/404 will not get better by trying again
                    raise MediaError("download_refused", f"HTTP {resp.status}")
                declared = resp.content_length
                if declared is not None and declared > self.limits.max_bytes:
                    raise MediaError("too_large", f"{declared} bytes")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    data.extend(chunk)
                    if len(data) > self.limits.max_bytes:
                        raise MediaError("too_large", f"over {self.limits.max_bytes} bytes")
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MediaError("download_failed", f"{type(exc).__name__}: {exc}") from exc


def sniff_audio(data: bytes) -> str | None:
    """The FFmpeg demuxer for a voice note's container, from its magic bytes; None if it is
    not one of ogg, mp4 (m4a, 3gp), amr, mp3, wav."""
    if data.startswith(b"OggS"):
        return "ogg"
    if data[4:8] == b"ftyp":
        return "mp4"
    if data.startswith(b"#!AMR"):
        return "amr"
    if data.startswith(b"RIFF") and data[8:12] == b"WAVE":
        return "wav"
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def decode_audio(data: bytes, max_seconds: float, timeout_s: float = 20.0) -> np.ndarray:
    """A voice note (OGG/Opus, MP4/M4A, AMR, MP3, WAV) -> float32 mono 16 kHz. Blocking: run
    it in a thread. ``unsupported_format`` for any other bytes; ``too_long`` past
    ``max_seconds`` of audio; ``decode_timeout`` past ``timeout_s`` of work."""
    import av

    fmt = sniff_audio(data)
    if fmt is None:
        raise MediaError("unsupported_format", f"not a voice note container ({data[:8]!r})")
    limit = int(max_seconds * SAMPLE_RATE_HZ)
    deadline = time.monotonic() + timeout_s
    chunks: list[np.ndarray] = []
    total = 0
    try:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)
        with av.open(io.BytesIO(data), mode="r", format=fmt, metadata_errors="ignore",
                     timeout=timeout_s) as container:
            if not container.streams.audio:
                raise MediaError("decode_failed", "no audio stream")
            frames: Any = container.decode(audio=0)
            for frame in [*_frames(frames), None]:
                for out in resampler.resample(frame):
                    array = out.to_ndarray().reshape(-1)
                    chunks.append(array)
                    total += array.shape[0]
                    if total > limit:
                        raise MediaError("too_long", f"longer than {max_seconds:.0f} s")
                if time.monotonic() > deadline:
                    raise MediaError("decode_timeout", f"not decoded in {timeout_s:.0f} s")
    except MediaError:
        raise
    except (av.FFmpegError, ValueError, IndexError, OSError) as exc:
        raise MediaError("decode_failed", f"{type(exc).__name__}: {exc}") from exc
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return (np.concatenate(chunks).astype(np.float32) / 32768.0).astype(np.float32)


def _frames(frames: Any):
    """Decoded frames, skipping the odd corrupt packet as faster-whisper does."""
    import av

    iterator = iter(frames)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue


class VoiceStt(Protocol):
    """Speech recognition for voice notes (compose gives sched/lanes.NoteRecognizer: the
    low-priority lane, so live calls go first)."""

    async def transcribe_async(self, pcm: np.ndarray, language_hint: str | None = None
                               ) -> object: ...


@dataclass(frozen=True)
class VoiceResult:
    media: MediaResult
    text: str            # "" unless usable speech was heard
    language: str | None


async def transcribe_voice(item: MediaRow, fetcher: MediaFetcher, stt: VoiceStt | None,
                           language_hint: str | None = None) -> VoiceResult:
    """Download, decode and transcribe one voice note. Never raises for a bad note: the
    result's media status says what happened (transcribed, unusable, failed)."""
    if stt is None:
        return VoiceResult(MediaResult(item.id, "failed", detail="speech recognition is not "
                                                                  "loaded"), "", None)
    started = time.perf_counter()
    try:
        data = await fetcher.download(item.url)
        limits = fetcher.limits
        pcm = await asyncio.to_thread(decode_audio, data, limits.max_audio_s,
                                      limits.decode_timeout_s)
    except MediaError as exc:
        log.warning("voice note %d not usable: %s", item.position, exc)
        status = "unusable" if exc.code == "too_long" else "failed"
        return VoiceResult(MediaResult(item.id, status, detail=exc.code + ": " + str(exc)),
                           "", None)
    duration_ms = int(pcm.shape[0] * 1000 / SAMPLE_RATE_HZ)
    try:
        transcript = await stt.transcribe_async(pcm, language_hint)
    except Exception as exc:  # noqa: BLE001 - the STT's own error types; answered politely
        log.error("voice note %d: transcription failed: %s", item.position, exc)
        return VoiceResult(MediaResult(item.id, "failed", len(data), duration_ms,
                                       detail=f"stt: {exc}"), "", None)
    text = (getattr(transcript, "text", "") or "").strip()
    rejected = getattr(transcript, "rejected_reason", None)
    language = getattr(transcript, "language", None)
    log.info("voice note %d: %d ms of audio, transcribed in %.0f ms (%s)", item.position,
             duration_ms, (time.perf_counter() - started) * 1000, rejected or "accepted")
    if rejected or not text:
        return VoiceResult(MediaResult(item.id, "unusable", len(data), duration_ms, None,
                                       language, rejected or "empty"), "", language)
    return VoiceResult(MediaResult(item.id, "transcribed", len(data), duration_ms, text,
                                   language), text, language)
