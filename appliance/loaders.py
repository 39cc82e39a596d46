"""Load every model once at start-up, off the event loop, and wire the engine.

What can take a call: database, VAD, speech recognition, a voice, and a language model (Gemini
configured, or the local model loaded). The knowledge base is optional: without its embedding
model, search falls back to keywords.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .audio.vad import SileroVad
from .call.speech import PhoneSpeech
from .stt.whisper import SpeechRecognizer
from .tts.piper import Speaker

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger(__name__)


async def load_all(rt: "Runtime") -> None:
    s = rt.settings
    rt.vad = await rt.load("vad", SileroVad.load, needed_for_calls=True)
    rt.stt = await rt.load(
        "stt", lambda: SpeechRecognizer.load(s.stt.model.path, threads=s.stt.threads,
                                             compute_type=s.stt.compute_type,
                                             beam_size=s.stt.beam_size,
                                             languages=s.stt.languages),
        needed_for_calls=True, ref=s.stt.model)
    missing_voice = next((ref for ref in s.tts.voices.values() if not ref.present), None)
    rt.tts = await rt.load(
        "tts", lambda: Speaker.load({lang: ref.path for lang, ref in s.tts.voices.items()},
                                    threads=1),
        needed_for_calls=True, ref=missing_voice or s.tts.voices[""])
    if rt.tts is not None:
        rt.extras["phone_speech"] = PhoneSpeech(rt.tts)
    await _load_brain(rt)
    if rt.extras.get("phone_speech") is not None:
        await _warm_phrases(rt)


async def _load_brain(rt: "Runtime") -> None:
    from .conversation.wiring import build_engine

    await build_engine(rt)


async def _warm_phrases(rt: "Runtime") -> None:
    """Synthesise the fixed phrases now, so the greeting starts at once on every call."""
    from .call.session import PHRASES

    speech: PhoneSpeech = rt.extras["phone_speech"]
    language = rt.settings.business.language
    for text in (rt.settings.business.greeting, *PHRASES.values()):
        await speech.render(text, language)
