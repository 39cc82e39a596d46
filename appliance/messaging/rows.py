"""The messaging rows (migration 004) as frozen dataclasses: what the webhook stores, what the
inbound worker reads and answers, and the outbox's jobs."""

from __future__ import annotations

from dataclasses import dataclass

from .optout import ConsentWord



@dataclass(frozen=True)
class MediaItem:
    position: int        # N in MediaUrlN
    url: str
    content_type: str
    kind: str            # voice, image, video, document, other


@dataclass(frozen=True)
class Inbound:
    """One parsed messaging webhook."""

    message_sid: str
    channel: str         # "whatsapp" or "sms"
    phone: str           # E.164, no prefix
    from_address: str
    to_address: str
    body: str
    profile_name: str | None
    media: tuple[MediaItem, ...] = ()


@dataclass(frozen=True)
class MediaRow:
    id: int
    position: int
    url: str
    content_type: str
    kind: str


@dataclass(frozen=True)
class InboundRow:
    id: int
    message_sid: str
    channel: str
    phone: str
    from_address: str
    to_address: str
    body: str
    profile_name: str | None
    received_at: str
    media: tuple[MediaRow, ...]


@dataclass(frozen=True)
class Customer:
    opted_out: bool
    language: str | None


@dataclass(frozen=True)
class MediaResult:
    media_id: int
    status: str          # transcribed, unusable, failed, unsupported
    bytes: int | None = None
    duration_ms: int | None = None
    transcript: str | None = None
    language: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Draft:
    """One outbound message an answer consists of."""

    purpose: str         # reply, notice, apology, opt_out, opt_in
    body: str


@dataclass(frozen=True)
class Handled:
    """How an inbound message was answered; written in one transaction by ``complete``."""

    state: str                       # replied or ignored
    kind: str                        # text, voice, media, empty, opt_out, opt_in
    text: str | None = None
    language: str | None = None
    error: str | None = None
    replies: tuple[Draft, ...] = ()
    media: tuple[MediaResult, ...] = ()
    consent: ConsentWord | None = None


@dataclass(frozen=True)
class OutRow:
    id: int
    in_id: int | None
    in_sid: str | None               # the MessageSid answered (for the log context)
    part: int
    purpose: str
    channel: str
    phone: str
    to_address: str
    from_address: str
    body: str
    content_sid: str | None
    state: str
    attempts: int
    next_attempt_at: str | None
    attempt_started_at: str | None
    twilio_sid: str | None

    @property
    def log_id(self) -> str:
        return self.in_sid or f"out-{self.id}"
