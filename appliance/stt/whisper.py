"""Speech to text with faster-whisper, for one caller turn at a time.

``SpeechRecognizer.transcribe`` is synchronous and CPU-bound: run it in a worker thread
(``transcribe_async`` does). Decoding happens while faster-whisper's lazy segment generator is
iterated, so the generator is consumed inside ``transcribe``, never handed back to the loop.

Two decoding paths produce the same numbers:

* stock: ``WhisperModel.transcribe(...)`` (one configured language, or audio over 30 s);
* direct: features -> ONE ``encode`` -> language detection on that encoder output ->
  ``generate``. Used when several languages are configured, because faster-whisper's own
  ``detect_language`` runs the encoder once and ``transcribe`` then runs it again; and when
  ``short_window`` is on, which gives the encoder only the speech plus one second instead of
  a 30 s window padded with silence (much faster; Whisper was trained on 30 s windows, so it
  stays off unless measured to be good enough). With the full window the direct path computes
  exactly what the stock path does (tests compare them).

Whisper invents text on silence and noise: every transcript goes through the guard
(stt/guard.py); a rejected one has empty text and a short ``rejected_reason`` code.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .guard import (DEFAULT_GUARD, GuardThresholds, choose_language, compression_ratio, junk_reason,
                    rejection_reason)

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
WINDOW_FRAMES = 3000           # 30 s of 10 ms mel frames: Whisper's training window
WINDOW_SAMPLES = 30 * SAMPLE_RATE_HZ
SHORT_WINDOW_PAD_FRAMES = 100  # short window: the speech plus 1 s of (zero) features ...
SHORT_WINDOW_STEP_FRAMES = 100  # ... rounded up to whole seconds
SHORT_WINDOW_MIN_FRAMES = 1000  # ... and never under 10 s: shorter windows drop one-word turns

__all__ = [   # the guard's names are re-exported: callers import them from here
    "GuardThresholds", "SpeechRecognizer", "SttError", "Transcript", "choose_language",
    "junk_reason", "rejection_reason",
]


class SttError(Exception):
    """Speech-to-text failure. ``code``: model_missing, model_invalid, language_unsupported,
    bad_audio."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"stt {code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Transcript:
    """What the caller said in one turn (or why nothing usable was heard)."""

    text: str                    # "" when rejected
    language: str                # one of the configured languages
    language_probability: float  # the model's probability for ``language`` (1.0 if not detected)
    no_speech_prob: float        # probability of the <|nospeech|> token; NaN if never decoded
    avg_logprob: float           # mean log-probability per decoded token; NaN if never decoded
    audio_ms: int                # length of the audio given to transcribe
    compute_ms: float            # wall time spent in transcribe
    rejected_reason: str | None = None  # None, or a code: see GuardThresholds

    @property
    def accepted(self) -> bool:
        return self.rejected_reason is None


# ----------------------------------------------------------------------------------------------
# The recognizer

@dataclass(frozen=True)
class _Decoded:
    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float


class SpeechRecognizer:
    """One loaded Whisper model and the decoding settings for phone turns. Thread-safe."""

    def __init__(self, model: Any, *, languages: tuple[str, ...], beam_size: int = 1,
                 short_window: bool = False,
                 short_window_min_frames: int = SHORT_WINDOW_MIN_FRAMES,
                 temperatures: tuple[float, ...] = (0.0, 0.4),
                 max_new_tokens: int = 224, thresholds: GuardThresholds = DEFAULT_GUARD,
                 language_hint_margin: float = 0.15) -> None:
        """``model`` is a loaded ``faster_whisper.WhisperModel`` (see ``load``).

        ``temperatures``: greedy/beam first; the later (sampled, single hypothesis) ones are
        tried only if the text loops (compression ratio), never merely for a low log-probability,
        which on a phone line costs a second decode for little gain.
        """
        languages = tuple(dict.fromkeys(languages))
        if not languages:
            raise SttError("language_unsupported", "configure at least one language")
        supported = set(model.supported_languages)
        unknown = [code for code in languages if code not in supported]
        if unknown:
            raise SttError("language_unsupported",
                           f"{', '.join(unknown)} not supported by this Whisper model"
                           + ("" if model.model.is_multilingual else " (English-only model)"))
        if beam_size < 1 or not temperatures or max_new_tokens < 1:
            raise ValueError("beam_size, temperatures and max_new_tokens must be positive")
        self._model = model
        self._languages = languages
        self._beam_size = beam_size
        self._short_window = short_window
        self._short_window_min = short_window_min_frames
        self._temperatures = tuple(temperatures)
        self._max_new_tokens = max_new_tokens
        self._thresholds = thresholds
        self._hint_margin = language_hint_margin
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        multilingual = model.model.is_multilingual
        self._tokenizers = {}
        for code in languages:
            tok = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe", language=code)
            self._tokenizers[code] = (tok, get_suppressed_tokens(tok, [-1]))

    @classmethod
    def load(cls, model_path: str | Path, *, threads: int, compute_type: str = "int8",
             beam_size: int = 1, languages: tuple[str, ...] = ("en",),
             warm_up: bool = True, **options: Any) -> SpeechRecognizer:
        """Load a CTranslate2 Whisper directory from disk (never from a hub); fail fast."""
        path = Path(model_path)
        if not (path / "model.bin").is_file():
            raise SttError("model_missing", f"no Whisper model at {path} (a CTranslate2 "
                                            "directory with model.bin is expected)")
        from faster_whisper import WhisperModel

        started = time.perf_counter()
        try:
            model = WhisperModel(str(path), device="cpu", compute_type=compute_type,
                                 cpu_threads=threads, local_files_only=True)
        except Exception as exc:  # ctranslate2/tokenizers raise assorted types; re-raised
            raise SttError("model_invalid", f"cannot load Whisper model {path}: {exc}") from exc
        recognizer = cls(model, languages=languages, beam_size=beam_size, **options)
        if warm_up:
            recognizer.transcribe(np.zeros(SAMPLE_RATE_HZ, dtype=np.float32))
        logger.info("whisper loaded: %s (%s, %d threads, languages %s) in %.0f ms", path.name,
                    compute_type, threads, ",".join(recognizer.languages),
                    (time.perf_counter() - started) * 1000)
        return recognizer

    @property
    def languages(self) -> tuple[str, ...]:
        return self._languages

    @property
    def short_window(self) -> bool:
        return self._short_window

    async def transcribe_async(self, pcm: np.ndarray, language_hint: str | None = None, *,
                               executor: Executor | None = None) -> Transcript:
        """``transcribe`` in a worker thread (``executor``, or asyncio's default one).

        Cancelling the awaiting task does not stop the model: the thread finishes the turn and
        its result is dropped.
        """
        if executor is None:
            return await asyncio.to_thread(self.transcribe, pcm, language_hint)
        loop = asyncio.get_running_loop()
        call = functools.partial(self.transcribe, pcm, language_hint)
        return await loop.run_in_executor(executor, call)

    def transcribe(self, pcm: np.ndarray, language_hint: str | None = None) -> Transcript:
        """Transcribe one turn: ``pcm`` is float32 mono 16 kHz in [-1, 1]. Blocking."""
        started = time.perf_counter()
        pcm = _check_audio(pcm)
        audio_ms = round(len(pcm) * 1000 / SAMPLE_RATE_HZ)
        language = self._languages[0] if len(self._languages) == 1 else None
        if audio_ms < self._thresholds.min_audio_ms:
            guess = language or (language_hint if language_hint in self._languages
                                 else self._languages[0])
            return Transcript("", guess, 1.0 if language else 0.0, math.nan, math.nan,
                              audio_ms, _ms_since(started), "too_short")

        language_probability = 1.0
        if len(pcm) > WINDOW_SAMPLES or (language is not None and not self._short_window):
            if language is None:
                _, _, all_probs = self._model.detect_language(audio=pcm)
                language, language_probability = choose_language(
                    dict(all_probs), self._languages, language_hint, self._hint_margin)
            decoded = self._decode_stock(pcm, language)
        else:
            decoded, language, language_probability = self._decode_direct(
                pcm, language, language_hint)

        reason = rejection_reason(decoded.text, audio_ms=audio_ms,
                                  no_speech_prob=decoded.no_speech_prob,
                                  avg_logprob=decoded.avg_logprob,
                                  compression_ratio=decoded.compression_ratio,
                                  thresholds=self._thresholds)
        transcript = Transcript(
            text="" if reason else decoded.text, language=language,
            language_probability=language_probability, no_speech_prob=decoded.no_speech_prob,
            avg_logprob=decoded.avg_logprob, audio_ms=audio_ms, compute_ms=_ms_since(started),
            rejected_reason=reason)
        logger.debug("stt %s: %d ms audio in %.0f ms, lang %s (%.2f), no_speech %.3f, "
                     "logprob %.2f, %r", reason or "ok", audio_ms, transcript.compute_ms,
                     language, language_probability, decoded.no_speech_prob,
                     decoded.avg_logprob, decoded.text)
        return transcript

    # -- decoding ------------------------------------------------------------------------------

    def _decode_stock(self, pcm: np.ndarray, language: str) -> _Decoded:
        segments, _info = self._model.transcribe(
            pcm, language=language, beam_size=self._beam_size, best_of=1,
            temperature=list(self._temperatures),
            compression_ratio_threshold=self._thresholds.max_compression_ratio,
            log_prob_threshold=None, no_speech_threshold=None,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
            max_new_tokens=self._max_new_tokens)
        segments = list(segments)  # decoding happens here, in this (worker) thread
        if not segments:  # the decoder produced no text at all
            return _Decoded("", math.nan, math.nan, 0.0)
        tokens = [max(len(s.tokens), 1) for s in segments]
        text = " ".join(" ".join(s.text.split()) for s in segments).strip()
        return _Decoded(
            text=text,
            no_speech_prob=segments[0].no_speech_prob,
            avg_logprob=sum(s.avg_logprob * n for s, n in zip(segments, tokens)) / sum(tokens),
            compression_ratio=max(s.compression_ratio for s in segments))

    def _decode_direct(self, pcm: np.ndarray, language: str | None,
                       hint: str | None) -> tuple[_Decoded, str, float]:
        from faster_whisper.audio import pad_or_trim

        model = self._model
        features = model.feature_extractor(pcm)
        content_frames = min(features.shape[-1] - 1, WINDOW_FRAMES)
        window = (short_window_frames(content_frames, self._short_window_min)
                  if self._short_window else WINDOW_FRAMES)
        encoder_output = model.encode(pad_or_trim(features[:, :content_frames], window))
        probability = 1.0
        if language is None:
            ranked = model.model.detect_language(encoder_output)[0]
            language, probability = choose_language(
                {token[2:-2]: p for token, p in ranked}, self._languages, hint,
                self._hint_margin)
        tokenizer, suppress = self._tokenizers[language]
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        return self._generate(encoder_output, prompt, tokenizer, suppress), language, probability

    def _generate(self, encoder_output: Any, prompt: list[int], tokenizer: Any,
                  suppress: list[int]) -> _Decoded:
        """faster-whisper's generate_with_fallback, with fallback on looping text only."""
        attempts: list[_Decoded] = []
        for temperature in self._temperatures:
            if temperature > 0:
                kwargs = {"beam_size": 1, "num_hypotheses": 1, "sampling_topk": 0,
                          "sampling_temperature": temperature}
            else:
                kwargs = {"beam_size": self._beam_size, "patience": 1}
            result = self._model.model.generate(
                encoder_output, [prompt], length_penalty=1, repetition_penalty=1,
                no_repeat_ngram_size=0, max_length=len(prompt) + self._max_new_tokens,
                return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                suppress_tokens=suppress, max_initial_timestamp_index=50, **kwargs)[0]
            tokens = result.sequences_ids[0]
            text = tokenizer.decode(tokens).strip()
            decoded = _Decoded(
                text=" ".join(text.split()), no_speech_prob=result.no_speech_prob,
                avg_logprob=result.scores[0] * len(tokens) / (len(tokens) + 1),
                compression_ratio=compression_ratio(text))
            attempts.append(decoded)
            if decoded.compression_ratio <= self._thresholds.max_compression_ratio:
                return decoded
        return max(attempts, key=lambda d: d.avg_logprob)


def short_window_frames(content_frames: int, min_frames: int = SHORT_WINDOW_MIN_FRAMES) -> int:
    """Encoder window for ``short_window``: the speech plus ~1 s, in whole seconds, at least
    ``min_frames`` (on the real-speech set a window under ~10 s turns "Yes." into nothing,
    bench/results/turn_stt.md), at most 30 s."""
    frames = content_frames + SHORT_WINDOW_PAD_FRAMES
    frames = -(-frames // SHORT_WINDOW_STEP_FRAMES) * SHORT_WINDOW_STEP_FRAMES
    return min(max(frames, min_frames), WINDOW_FRAMES)


def _check_audio(pcm: np.ndarray) -> np.ndarray:
    if not isinstance(pcm, np.ndarray) or pcm.ndim != 1:
        raise SttError("bad_audio", "expected a 1-D numpy array of 16 kHz mono samples")
    if not np.issubdtype(pcm.dtype, np.floating):
        raise SttError("bad_audio", f"expected float32 samples in [-1, 1], got {pcm.dtype}")
    return np.ascontiguousarray(pcm, dtype=np.float32)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
