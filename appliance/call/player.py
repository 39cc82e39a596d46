"""Bot audio out: a server-side queue sent to Twilio at real-time pace with a small look-ahead.

Twilio plays whatever it is sent, in order, and buffers minutes of it, so the real queue stays
here: only `lookahead_ms` of audio is ever in Twilio's buffer. That keeps an interruption
instant (`clear` drops at most the look-ahead) and tells us what the caller actually heard.

Audio is organised in pieces (one spoken clause each). After a piece's last frame a `mark` named
after the piece is sent; Twilio echoes it when that audio has been played, which confirms the
piece as heard. `clear` makes Twilio echo every pending mark at once, so echoes of marks sent
before a clear are ignored.

The playhead is estimated from a wall clock (`clock`, injectable): `buffer_end` is when the
audio already sent will have finished playing.

A speculative reply is queued `held` (`hold(reply_id)` before its first piece): its audio is
synthesised into its pieces but nothing of it is sent, and it does not count as speaking, until
`release(reply_id)`; `drop(reply_id)` forgets it unsent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from ..audio.codec import ULAW_FRAME_BYTES, ULAW_SILENCE_BYTE
from ..telephony.media import clear_message, mark_message, media_message

log = logging.getLogger(__name__)
FRAME_S = 0.020


@dataclass
class Piece:
    """One clause of speech: its text and its mu-law audio, which may still be arriving."""

    id: int
    text: str
    reply_id: int
    frames: list[bytes] = field(default_factory=list)
    complete: bool = False       # no more audio will be added
    sent: int = 0                # frames handed to Twilio (rewound on pause)
    mark_sent: bool = False
    heard: bool = False          # its mark was echoed (not by a clear)
    first_sent_at: float | None = None
    _tail: bytes = b""

    def add_audio(self, ulaw: bytes) -> None:
        data = self._tail + ulaw
        whole = len(data) - len(data) % ULAW_FRAME_BYTES
        self.frames.extend(data[i:i + ULAW_FRAME_BYTES] for i in range(0, whole, ULAW_FRAME_BYTES))
        self._tail = data[whole:]

    def finish(self) -> None:
        if self._tail:
            pad = bytes([ULAW_SILENCE_BYTE]) * (ULAW_FRAME_BYTES - len(self._tail))
            self.frames.append(self._tail + pad)
            self._tail = b""
        self.complete = True

    @property
    def mark_name(self) -> str:
        return f"r{self.reply_id}p{self.id}"


@dataclass(frozen=True)
class Heard:
    text: str            # what the caller heard: confirmed pieces + the played share of the last
    complete: bool       # every piece was heard in full


class Player:
    def __init__(self, send: Callable[[str], Awaitable[None]], stream_sid: str,
                 lookahead_ms: int = 200, clock: Callable[[], float] = time.monotonic,
                 on_first_frame: Callable[[int, float], None] | None = None,
                 on_heard: Callable[[Piece, float], None] | None = None,
                 on_piece_sent: Callable[[Piece, float], None] | None = None) -> None:
        self._send = send
        self._sid = stream_sid
        self._lookahead_s = lookahead_ms / 1000
        self._clock = clock
        self._on_first_frame = on_first_frame   # (reply_id, when) for turn_latency
        self._on_heard = on_heard               # (piece, when) for heard_latency
        self._on_piece_sent = on_piece_sent     # (piece, when) its first frame went out
        self._pieces: list[Piece] = []          # not yet fully heard, in order
        self._history: list[Piece] = []         # every piece of the current reply
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._paused = False
        self._buffer_end = 0.0                  # when Twilio will have played all it was sent
        self._stale_marks: set[str] = set()     # echoes to ignore (sent before a clear)
        self._next_id = 0
        self._first_frame_replies: set[int] = set()
        self._held: set[int] = set()            # speculative replies: queued, not sent
        self.frames_sent = 0

    # -- queueing ------------------------------------------------------------------------------
    def new_piece(self, text: str, reply_id: int) -> Piece:
        piece = Piece(self._next_id, text, reply_id)
        self._next_id += 1
        self._pieces.append(piece)
        self._history.append(piece)
        self._idle.clear()
        self._wake.set()
        return piece

    def audio_added(self) -> None:
        """Call after Piece.add_audio/finish so the sender wakes up."""
        self._wake.set()

    def queued_s(self) -> float:
        """Seconds of audio the caller has still to hear: in Twilio's buffer and queued here
        (a held speculative reply does not count: nothing of it plays yet)."""
        unsent = sum(len(p.frames) - p.sent for p in self._pieces if p.reply_id not in self._held)
        return max(0.0, self._buffer_end - self._clock()) + unsent * FRAME_S

    @property
    def speaking(self) -> bool:
        """Bot audio is queued, in Twilio's buffer, or awaiting its mark (held audio is not)."""
        return any(p.reply_id not in self._held for p in self._pieces)

    # -- speculative replies -------------------------------------------------------------------
    def hold(self, reply_id: int) -> None:
        """Queue `reply_id`'s pieces without sending them until `release`."""
        self._held.add(reply_id)

    def is_held(self, reply_id: int) -> bool:
        return reply_id in self._held

    def release(self, reply_id: int) -> None:
        """Send the held reply now (and what it still adds)."""
        self._held.discard(reply_id)
        self._wake.set()

    def drop(self, reply_id: int) -> None:
        """Forget a held reply: none of it was sent."""
        self._held.discard(reply_id)
        self._pieces = [p for p in self._pieces if p.reply_id != reply_id]
        self._history = [p for p in self._history if p.reply_id != reply_id]
        if not self._pieces:
            self._idle.set()

    @property
    def paused(self) -> bool:
        return self._paused

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # -- control (barge-in) --------------------------------------------------------------------
    async def pause(self) -> None:
        """Stop the audio now (Twilio `clear`) but keep the rest of the reply to resume later."""
        if self._paused:
            return
        self._paused = True
        await self._clear_and_rewind()

    async def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._wake.set()

    async def stop(self) -> Heard:
        """Drop the reply: `clear`, forget every queued piece, say what the caller heard."""
        heard = self.heard()
        if self._pieces:
            await self._clear_and_rewind()
        self._pieces.clear()
        self._paused = False
        self._history = []
        self._idle.set()
        return heard

    def start_reply(self) -> None:
        """A new reply begins: what was heard is counted from here."""
        self._history = [p for p in self._pieces]

    async def _clear_and_rewind(self) -> None:
        now = self._clock()
        unplayed = max(0, round((self._buffer_end - now) / FRAME_S))
        self._buffer_end = now
        await self._send(clear_message(self._sid))
        for piece in self._pieces:
            if piece.mark_sent:
                self._stale_marks.add(piece.mark_name)
                piece.mark_sent = False
        # Walk back from the newest audio sent: those frames were dropped by `clear`.
        for piece in reversed(self._pieces):
            if unplayed <= 0:
                break
            back = min(unplayed, piece.sent)
            piece.sent -= back
            unplayed -= back
        # A piece whose audio was all played but whose mark was cleared is heard.
        for piece in list(self._pieces):
            if piece.complete and piece.sent >= len(piece.frames) and not piece.heard:
                self._mark_heard(piece, now)
        self._wake.set()

    # -- marks ----------------------------------------------------------------------------------
    def on_mark(self, name: str) -> None:
        if name in self._stale_marks:
            self._stale_marks.discard(name)
            return
        for piece in self._pieces:
            if piece.mark_name == name:
                self._mark_heard(piece, self._clock())
                return
        log.debug("mark %s for no queued piece", name)

    def _mark_heard(self, piece: Piece, when: float) -> None:
        piece.heard = True
        if piece in self._pieces:
            self._pieces.remove(piece)
        if self._on_heard:
            self._on_heard(piece, when)
        if not self._pieces:
            self._idle.set()

    def heard(self) -> Heard:
        """Confirmed pieces in full, plus the share of the playing piece already played."""
        now = self._clock()
        unplayed = max(0, round((self._buffer_end - now) / FRAME_S))
        parts, complete = [], True
        for piece in self._history:
            if piece.heard:
                parts.append(piece.text)
                continue
            complete = False
            played = max(0, piece.sent - unplayed)
            unplayed = max(0, unplayed - piece.sent)
            if played and piece.frames:
                words = piece.text.split()
                share = played / max(len(piece.frames), 1)
                count = int(len(words) * share)
                if count:
                    parts.append(" ".join(words[:count]))
        return Heard(" ".join(parts).strip(), complete and not self._pieces)

    # -- the sender task -----------------------------------------------------------------------
    async def run(self) -> None:
        """Send frames at real-time pace, never more than the look-ahead ahead of the playhead."""
        while True:
            frame, piece = self._next_frame()
            if frame is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = self._clock()
            ahead = self._buffer_end - now
            if ahead > self._lookahead_s:
                try:
                    await asyncio.wait_for(self._wake.wait(), ahead - self._lookahead_s)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            await self._send(media_message(self._sid, frame))
            self.frames_sent += 1
            self._buffer_end = max(self._buffer_end, now) + FRAME_S
            piece.sent += 1
            if piece.first_sent_at is None:
                piece.first_sent_at = now
                if self._on_piece_sent:
                    self._on_piece_sent(piece, now)
            if self._on_first_frame and piece.reply_id not in self._first_frame_replies:
                self._first_frame_replies.add(piece.reply_id)
                self._on_first_frame(piece.reply_id, now)
            if piece.complete and piece.sent == len(piece.frames) and not piece.mark_sent:
                piece.mark_sent = True
                await self._send(mark_message(self._sid, piece.mark_name))

    def _next_frame(self) -> tuple[bytes | None, Piece | None]:
        if self._paused:
            return None, None
        for piece in list(self._pieces):
            if piece.reply_id in self._held:
                return None, None      # a speculative reply: nothing after it plays either
            if piece.sent < len(piece.frames):
                return piece.frames[piece.sent], piece
            if not piece.complete:
                return None, None      # wait for this piece's audio: keep the order
            if not piece.frames:       # synthesis produced nothing: nothing to play or mark
                self._pieces.remove(piece)
                if piece in self._history:
                    self._history.remove(piece)
                if not self._pieces:
                    self._idle.set()
        return None, None
