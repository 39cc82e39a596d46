"""Text to speech with Piper voices (piper-tts 1.8), one voice per language.

``Speaker.synthesize`` is synchronous and CPU-bound: run it in a worker thread and iterate it
there. Piper phonemizes the whole text first, then runs the voice model once per sentence and
yields one ``AudioPiece`` per sentence, so feed it one clause or sentence at a time (see
``clauses.ClauseSplitter``) to hear the first audio early.

Threads: ``PiperVoice.load`` builds its onnxruntime session with default options (as many
intra-op threads as cores). ``Voice.load`` builds the same ``PiperVoice`` (a dataclass) around
its own session instead, so ``threads`` caps the intra-op pool; 0 keeps onnxruntime's default.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["AudioPiece", "Speaker", "TtsError", "Voice"]


class TtsError(Exception):
    """Text-to-speech failure. ``code``: voice_missing, voice_invalid, no_voice."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"tts {code}: {message}")
        self.code = code


@dataclass(frozen=True)
class AudioPiece:
    """Synthesised speech for one sentence: mono PCM16 at the voice's own rate."""

    samples: np.ndarray = field(repr=False)  # int16, mono
    sample_rate_hz: int

    @property
    def duration_ms(self) -> float:
        return len(self.samples) * 1000 / self.sample_rate_hz


class Voice:
    """One loaded Piper voice (an ``.onnx`` with its ``.onnx.json``). Thread-safe."""

    def __init__(self, piper_voice: Any, *, name: str, length_scale: float | None = None,
                 volume: float = 1.0) -> None:
        from piper import SynthesisConfig

        self._voice = piper_voice
        self.name = name
        self._config = SynthesisConfig(length_scale=length_scale, volume=volume)

    @classmethod
    def load(cls, onnx_path: str | Path, *, threads: int = 0, length_scale: float | None = None,
             volume: float = 1.0, warm_up: bool = True) -> Voice:
        """Load a voice from disk; ``threads`` = onnxruntime intra-op threads (0 = default).

        ``warm_up`` synthesises one word, so the phonemizer's one-time set-up and onnxruntime's
        first run are not paid by the first caller.
        """
        path = Path(onnx_path)
        config_path = path.with_name(path.name + ".json")
        if not path.is_file() or not config_path.is_file():
            raise TtsError("voice_missing", f"no Piper voice at {path} (needs {path.name} and "
                                            f"{config_path.name})")
        import onnxruntime
        from piper import PiperConfig, PiperVoice

        started = time.perf_counter()
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors derive from Exception only; re-raised
            raise TtsError("voice_invalid", f"cannot load Piper voice {path}: {exc}") from exc
        voice = cls(PiperVoice(session=session, config=config), name=path.name.removesuffix(
            ".onnx"), length_scale=length_scale, volume=volume)
        if warm_up:
            for _ in voice.synthesize("Hello."):
                pass
        logger.info("piper voice loaded: %s (%d Hz, %s) in %.0f ms", voice.name,
                    voice.sample_rate_hz, config.espeak_voice,
                    (time.perf_counter() - started) * 1000)
        return voice

    @property
    def sample_rate_hz(self) -> int:
        return int(self._voice.config.sample_rate)

    @property
    def espeak_voice(self) -> str:
        return str(self._voice.config.espeak_voice)

    def synthesize(self, text: str) -> Iterator[AudioPiece]:
        """One AudioPiece per sentence of ``text``, as Piper produces them. Blocking."""
        if not text.strip():
            return
        for chunk in self._voice.synthesize(text, syn_config=self._config):
            samples = chunk.audio_int16_array
            if samples.size:
                yield AudioPiece(samples=samples.reshape(-1), sample_rate_hz=chunk.sample_rate)


class Speaker:
    """The voices of the appliance by language; ``""`` names the default voice."""

    def __init__(self, voices: Mapping[str, Voice]) -> None:
        if "" not in voices:
            raise TtsError("no_voice", "a default voice (key \"\") is required")
        self._voices = dict(voices)

    @classmethod
    def load(cls, voice_paths: Mapping[str, str | Path], *, threads: int = 0,
             length_scale: float | None = None) -> Speaker:
        """Load every voice once (a path used by several languages is loaded once)."""
        loaded: dict[Path, Voice] = {}
        voices = {}
        for language, path in voice_paths.items():
            key = Path(path).resolve()
            if key not in loaded:
                loaded[key] = Voice.load(key, threads=threads, length_scale=length_scale)
            voices[language] = loaded[key]
        return cls(voices)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(code for code in self._voices if code)

    def has_voice(self, language: str | None) -> bool:
        """Does `language` have its own voice (not the default one standing in)?"""
        return self.voice_for(language) is not self._voices[""] or (
            bool(language) and self._default_speaks(language or ""))

    def _default_speaks(self, language: str) -> bool:
        espeak = self._voices[""].espeak_voice.replace("_", "-").split("-")[0].lower()
        return espeak == language.replace("_", "-").split("-")[0].lower()

    def voice_for(self, language: str | None) -> Voice:
        """The voice for ``language`` ("he", "ru", "en-US" -> "en"), else the default one."""
        if language:
            code = language.replace("_", "-").split("-")[0].lower()
            for key in (language, code):
                if key in self._voices:
                    return self._voices[key]
        return self._voices[""]

    def sample_rate_for(self, language: str | None = None) -> int:
        return self.voice_for(language).sample_rate_hz

    def synthesize(self, text: str, language: str | None = None) -> Iterator[AudioPiece]:
        """Speak ``text`` with the voice of ``language``; one piece per sentence. Blocking."""
        return self.voice_for(language).synthesize(text)
