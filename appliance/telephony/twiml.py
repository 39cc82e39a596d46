"""TwiML documents the appliance answers webhooks with. Pure: returns XML strings.

Built with the twilio library's ``VoiceResponse`` / ``MessagingResponse`` so escaping and
attribute names (snake_case -> camelCase) are the library's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Connect, Gather, Stream, VoiceResponse

logger = logging.getLogger(__name__)

MAX_PARAMETER_CHARS = 500  # Twilio: <Parameter> name + value must stay under 500 characters


def connect_stream(ws_url: str, action_url: str, parameters: Mapping[str, str]) -> str:
    """``<Connect action><Stream url><Parameter/>...</Stream></Connect>``: a bidirectional
    Media Stream. When the socket closes Twilio requests ``action_url`` (transfer, goodbye, or
    the fallback when the appliance fails mid-call). Per-call data goes in ``parameters`` (they
    arrive in ``start.customParameters``) because ``<Stream url>`` accepts no query string."""
    parts = urlsplit(ws_url)
    if parts.scheme != "wss" or not parts.netloc:
        raise ValueError(f"Stream url must be wss://, got {ws_url!r}")
    if parts.query or parts.fragment:
        raise ValueError("Stream url must not have a query string; use parameters")
    if not action_url:
        raise ValueError("action_url must not be empty")
    stream = Stream(url=ws_url)
    for name, value in parameters.items():
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise ValueError(f"parameter names and values must be strings: {name!r}")
        if len(name) + len(value) >= MAX_PARAMETER_CHARS:
            raise ValueError(f"parameter {name!r}: name + value must be < {MAX_PARAMETER_CHARS}")
        stream.parameter(name=name, value=value)
    connect = Connect(action=action_url)
    connect.append(stream)
    response = VoiceResponse()
    response.append(connect)
    return str(response)


def dial(number: str, action_url: str, caller_id: str | None = None, timeout_s: int = 20) -> str:
    """Transfer to ``number``; Twilio posts ``DialCallStatus`` to ``action_url`` afterwards."""
    if not number:
        raise ValueError("number must not be empty")
    if timeout_s <= 0:
        raise ValueError("timeout_s must be > 0")
    response = VoiceResponse()
    response.dial(number, action=action_url, caller_id=caller_id, timeout=timeout_s)
    return str(response)


def say_and_hangup(text: str, language: str | None = None, voice: str | None = None) -> str:
    response = VoiceResponse()
    response.say(text, language=language, voice=voice)
    response.hangup()
    return str(response)


@dataclass(frozen=True)
class Spoken:
    """One thing to say: a clip URL to <Play>, or (no local voice) text to <Say>."""

    play_url: str = ""
    text: str = ""
    language: str = "en-US"     # BCP-47, for <Say>
    voice: str | None = None    # a Twilio voice for <Say> (None: Twilio's for the language)


def _speak(parent: VoiceResponse | Gather, items: Sequence[Spoken]) -> None:
    for item in items:
        if item.play_url:
            parent.play(item.play_url)
        elif item.text:
            parent.say(item.text, language=item.language, voice=item.voice)


def gather_speech(
    action_url: str,
    prompt: str | None = None,
    language: str = "en-US",
    speech_timeout: str | int = "auto",
    hints: Iterable[str] | None = None,
    timeout_s: int = 5,
    speak: Sequence[Spoken] = (),
    partial_url: str | None = None,
) -> str:
    """Twilio-side speech recognition: posts ``SpeechResult`` and ``Confidence`` to
    ``action_url``, also when nothing was said (``actionOnEmptyResult``); ``speak`` is played
    inside the <Gather>, so the caller may talk over it; ``partial_url`` gets the partial
    results (``UnstableSpeechResult``) while the caller speaks."""
    gather = Gather(
        input="speech",
        action=action_url,
        language=language,
        speech_timeout=speech_timeout,
        timeout=timeout_s,
        hints=", ".join(hints) if hints else None,
        action_on_empty_result=True,
        partial_result_callback=partial_url,
    )
    if prompt:
        gather.say(prompt, language=language)
    _speak(gather, speak)
    response = VoiceResponse()
    response.append(gather)
    return str(response)


def speak_then_redirect(speak: Sequence[Spoken], url: str) -> str:
    """Say these, then ask ``url`` what next (the rest of a reply still being made)."""
    response = VoiceResponse()
    _speak(response, speak)
    response.redirect(url)
    return str(response)


def speak_then_hangup(speak: Sequence[Spoken]) -> str:
    response = VoiceResponse()
    _speak(response, speak)
    response.hangup()
    return str(response)


def speak_then_dial(speak: Sequence[Spoken], number: str, action_url: str) -> str:
    if not number:
        raise ValueError("number must not be empty")
    response = VoiceResponse()
    _speak(response, speak)
    response.dial(number, action=action_url)
    return str(response)


def redirect(url: str) -> str:
    response = VoiceResponse()
    response.redirect(url)
    return str(response)


def message(text: str) -> str:
    """Messaging webhook answer that replies with one SMS/WhatsApp message."""
    response = MessagingResponse()
    response.message(text)
    return str(response)


def empty_messaging() -> str:
    """Messaging webhook answer that sends nothing (the reply goes out later via REST)."""
    return str(MessagingResponse())
