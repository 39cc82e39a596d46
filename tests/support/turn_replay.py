"""Replay audio through the real turn-taking stack: Silero VAD -> TurnDetector, with real
Whisper and smart-turn answering at every Pause (delivered at once, on the audio timeline), and
the speculative-reply controller following along. Test support; no product code depends on it."""

from __future__ import annotations

import hashlib
import json
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from appliance.audio.resample import Resampler, Upsampler2x
from appliance.audio.vad import WINDOW_MS, SileroVad
from appliance.stt.whisper import SpeechRecognizer
from appliance.turns.decision import (
    Commit,
    Pause,
    Resume,
    TurnDecision,
    TurnDetector,
    TurnEvent,
    TurnParams,
    TurnStarted,
)
from appliance.turns.smart_turn import SmartTurnModel
from appliance.turns.speculation import ReplyAction, SpeculativeTurns
from appliance.turns.text import Expect
from bench.realmodels import RealModelUnavailable, ensure

PRE_ROLL_MS = 200  # audio before the onset given to STT and the turn model
CLIP_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "turn-clips"

# (name, pieces, expect): the pieces are spoken with the pause (ms) after each one.
CLIPS = [
    ("phone_groups", [("My number is 052.", 700), ("881.", 700), ("3344.", 0)], None),
    ("phone_asked", [("052.", 800), ("881.", 800), ("3344.", 0)], "phone"),
    ("filler", [("Umm...", 700), ("I'd like to book a table for two.", 0)], None),
    ("well_um", [("Well, um,", 700), ("what time do you open?", 0)], None),
    ("date", [("I'd like to come in on", 700), ("Tuesday the fifth.", 0)], None),
    ("address", [("My address is", 700), ("12 Main Street.", 0)], "address"),
]


def real_model(name: str) -> Path:
    """The cached real weights ``name``, or skip the test with the reason."""
    try:
        return ensure(name)
    except RealModelUnavailable as exc:
        pytest.skip(f"real model {name} unavailable: {exc}")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16), \
            w.getframerate()


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def to_phone(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Any-rate int16 -> 8 kHz int16, as a phone line carries it."""
    resampler = Resampler(rate, 8000, dtype="int16")
    return np.concatenate([resampler.process(pcm), resampler.flush()])


def phone_to_16k(pcm_8k: np.ndarray) -> np.ndarray:
    up = Upsampler2x(dtype="int16")
    return np.concatenate([up.process(pcm_8k), up.flush()]).astype(np.float32) / 32768.0


@dataclass
class Replay:
    events: list[tuple[int, TurnEvent]] = field(default_factory=list)  # (timeline ms, event)
    actions: list[ReplyAction[str]] = field(default_factory=list)
    signals: list[tuple[int, str, float | None]] = field(default_factory=list)  # per Pause

    @property
    def decisions(self) -> list[TurnDecision]:
        return [e.decision for _, e in self.events if isinstance(e, Commit)]


def replay(pcm_16k: np.ndarray, vad: SileroVad, stt: SpeechRecognizer, turn: SmartTurnModel,
           *, expect: Expect | None = None, params: TurnParams | None = None) -> Replay:
    det = TurnDetector(params or TurnParams())
    spec, stream, out = SpeculativeTurns[str](), vad.stream(), Replay()
    det.expect(expect)
    onset_ms = 0
    probs = stream.process(pcm_16k)
    for p in probs:
        for event in det.frame(p, WINDOW_MS):
            onset_ms = _handle(event, det, spec, out, pcm_16k, stt, turn, onset_ms)
    return out


def _handle(event: TurnEvent, det: TurnDetector, spec: SpeculativeTurns[str], out: Replay,
            pcm: np.ndarray, stt: SpeechRecognizer, turn: SmartTurnModel, onset_ms: int) -> int:
    out.events.append((det.now_ms, event))
    if isinstance(event, TurnStarted):
        return event.at_ms
    if isinstance(event, Pause):
        start = max(0, (onset_ms - PRE_ROLL_MS) * 16)
        audio = pcm[start:event.at_ms * 16]
        text = stt.transcribe(audio).text
        p = turn.predict(audio)
        out.signals.append((event.pause_id, text, p))
        out.actions += spec.transcript(event.pause_id, text)
        for follow in det.transcript(text, event.pause_id) + det.turn_probability(p, event.pause_id):
            onset_ms = _handle(follow, det, spec, out, pcm, stt, turn, onset_ms)
    elif isinstance(event, Resume):
        out.actions += spec.resume(event.pause_id)
    elif isinstance(event, Commit):
        out.actions += spec.commit(event.decision.text or "", event.decision.pause_id)
    return onset_ms


def speech_clip(name: str, pieces: list[tuple[str, int]]) -> tuple[np.ndarray, list[int]]:
    """8 kHz clip of ``pieces`` and the start (ms) of each piece; synthesised once, cached."""
    key = hashlib.sha256(json.dumps(pieces).encode()).hexdigest()[:12]
    path, starts_path = CLIP_CACHE / f"{name}-{key}.wav", CLIP_CACHE / f"{name}-{key}.json"
    if path.is_file() and starts_path.is_file():
        return read_wav(path)[0], json.loads(starts_path.read_text())
    from appliance.tts.piper import Voice

    voice = Voice.load(real_model("piper-joe"), threads=1)
    parts, starts, at = [], [], 0
    for text, pause_ms in pieces:
        audio = np.concatenate([piece.samples for piece in voice.synthesize(text)])
        speech = to_phone(audio, voice.sample_rate_hz)
        starts.append(at)
        parts += [speech, np.zeros(pause_ms * 8, dtype=np.int16)]
        at += (len(speech) + pause_ms * 8) // 8
    pcm = np.concatenate(parts)
    write_wav(path, pcm, 8000)
    starts_path.write_text(json.dumps(starts))
    return pcm, starts
