"""Which languages a <Gather> call can hear in our own voice (Piper, as <Play> clips) and which
only in Twilio's (<Say>): a language has a local voice when [tts] names one for it
(voice_<language>) or the default voice speaks it (its .onnx.json's espeak voice, "en-us")."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from .clips import Render
from .speech import PhoneSpeech

log = logging.getLogger(__name__)
LOCALES = {"en": "en-US", "he": "he-IL", "ru": "ru-RU", "ar": "ar-XA", "fr": "fr-FR",
           "de": "de-DE", "es": "es-ES"}


def locale(language: str) -> str:
    """The BCP-47 tag Twilio's <Gather language> and <Say language> take ("he" -> "he-IL")."""
    return LOCALES.get(language, language)


def voice_language(onnx: Path) -> str | None:
    """The language a Piper voice speaks, from its config ("en-us" -> "en"); None if unknown."""
    try:
        config = json.loads(onnx.with_name(onnx.name + ".json").read_text(encoding="utf-8"))
        voice = str(config["espeak"]["voice"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return voice.replace("_", "-").split("-")[0].lower() or None


def voiced_languages(settings: Settings) -> frozenset[str]:
    languages = {lang for lang, ref in settings.tts.voices.items() if lang and ref.present}
    default = settings.tts.voices.get("")
    if default is not None and default.present:
        spoken = voice_language(default.path)
        if spoken:
            languages.add(spoken)
    return frozenset(languages)


@dataclass(frozen=True)
class GatherVoice:
    speech: PhoneSpeech | None
    languages: frozenset[str]          # languages with a local voice

    @classmethod
    def from_settings(cls, settings: Settings, speech: PhoneSpeech | None) -> GatherVoice:
        languages = voiced_languages(settings) if speech is not None else frozenset()
        log.info("<Gather> calls speak with Piper in %s; <Say> otherwise",
                 ", ".join(sorted(languages)) or "no language")
        return cls(speech, languages)

    def reply(self, language: str) -> Render | None:
        """A reply's sentences: synthesised each time (not cached)."""
        if self.speech is None or language not in self.languages:
            return None
        return self.speech.synthesize

    def phrase(self, language: str) -> Render | None:
        """Fixed phrases (greeting, reprompt, goodbye): synthesised once, then cached."""
        if self.speech is None or language not in self.languages:
            return None
        return self.speech.render
