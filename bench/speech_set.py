"""The real-speech turn set: caller turns with the pauses people make, as 8 kHz phone WAVs.

    python -m bench.speech_set [--out bench/.cache/turnset] [--seed 12]

Renders bench/turn_specs.py with the real Piper joe voice (bench.realmodels "piper-joe", through
the product's appliance.tts.piper.Voice) and espeak-ng voices, joining phrases with the explicit
silences of the spec, 0.5 s of lead-in and 2 s of tail, a faint line-noise floor everywhere and,
for a few turns, pink/brown noise or babble at a low SNR. Writes the WAVs and manifest.json
(shared/audio's format plus pauses_s, kind, bot_question, voice, noise) into --out, and copies
the manifest to bench/turnset/manifest.json (committed, for reading the set without making it).

speech_start_s / speech_end_s are the first/last 20 ms frame with RMS > 200 in the voice before
the noise is mixed in (so a noisy turn has the same boundaries as its clean self); pauses_s are
the gaps of at least 200 ms inside them. Piper samples its prosody noise, so a rebuild may move
the times by a few milliseconds: the manifest is always rewritten with the audio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

from appliance.audio.resample import Resampler

from . import realmodels
from .turn_specs import TURNS, TurnSpec

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / ".cache" / "turnset"
COMMITTED_MANIFEST = ROOT / "bench" / "turnset" / "manifest.json"
RATE = 8000
FRAME = 160                       # 20 ms at 8 kHz
SPEECH_RMS = 200.0
MIN_PAUSE_S = 0.2
LEAD_S, TAIL_S = 0.5, 2.0
FLOOR_RMS = 6.0                   # a phone line is never digitally silent


class Synth:
    """Phrase -> int16 at 8 kHz, trimmed of the synthesiser's own leading/trailing silence."""

    def __init__(self) -> None:
        from appliance.tts.piper import Voice

        path = realmodels.ensure("piper-joe")
        self.joe = {"joe": Voice.load(path, threads=1),
                    "joe-slow": Voice.load(path, threads=1, length_scale=1.2, warm_up=False)}
        if shutil.which("espeak-ng") is None:
            raise SystemExit("espeak-ng is missing: apt-get install -y espeak-ng")

    def say(self, voice: str, text: str) -> np.ndarray:
        if voice in self.joe:
            pieces = list(self.joe[voice].synthesize(text))
            audio = np.concatenate([p.samples for p in pieces])
            rate = pieces[0].sample_rate_hz
        else:
            _, name, wpm = voice.split(":")
            audio, rate = _espeak(name, int(wpm), text)
        resampler = Resampler(rate, RATE, dtype="int16")
        out = np.concatenate([resampler.process(audio), resampler.flush()])
        return _trim(out.astype(np.float64))


def _espeak(name: str, wpm: int, text: str) -> tuple[np.ndarray, int]:
    wav = subprocess.run(["espeak-ng", "-v", name, "-s", str(wpm), "--stdout", text],
                         capture_output=True, check=True, timeout=30).stdout
    # espeak-ng's streamed header carries no data length; the samples follow its 44 bytes
    rate = int.from_bytes(wav[24:28], "little")
    return np.frombuffer(wav[44:], dtype="<i2").copy(), rate


def _trim(audio: np.ndarray, threshold: float = 150.0, margin: int = 240) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return audio
    return audio[max(0, loud[0] - margin):loud[-1] + margin]


def _frame_rms(audio: np.ndarray) -> np.ndarray:
    n = len(audio) // FRAME
    frames = audio[:n * FRAME].reshape(n, FRAME)
    return np.sqrt(np.mean(frames ** 2, axis=1))


def _colored(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "brown":
        noise = np.cumsum(white)
        noise -= np.convolve(noise, np.ones(801) / 801, mode="same")   # no DC drift
        return noise
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])                                   # 1/f power: pink
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def _babble(rng: np.random.Generator, synth: Synth, n: int) -> np.ndarray:
    lines = ["We should get the blue one, it was cheaper anyway.",
             "Did you see the game last night, unbelievable.",
             "Can you pass me that, no, the other one.",
             "I told her we would be there by eight at the latest."]
    voices = ["espeak:en-us+m3:170", "espeak:en-gb+f3:175", "espeak:en-us+f2:165",
              "espeak:en-gb+m2:180"]
    out = np.zeros(n)
    for line, voice in zip(lines, voices):
        talk = synth.say(voice, line)
        talk = np.tile(talk, n // len(talk) + 2)
        start = int(rng.integers(0, len(talk) - n))
        out += talk[start:start + n]
    return out


def _mix_noise(rng: np.random.Generator, synth: Synth, clean: np.ndarray, speech_rms: float,
               noise: str | None) -> np.ndarray:
    mixed = clean + rng.standard_normal(len(clean)) * FLOOR_RMS
    if noise is None:
        return mixed
    kind, snr_db = noise.split(":")
    bed = _babble(rng, synth, len(clean)) if kind == "babble" else _colored(rng, len(clean), kind)
    bed *= speech_rms / (np.sqrt(np.mean(bed ** 2)) * 10 ** (float(snr_db) / 20))
    return mixed + bed


def render(spec: TurnSpec, synth: Synth, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One turn as int16 samples and its manifest entry."""
    pieces = [np.zeros(int(LEAD_S * RATE))]
    for part in spec.parts:
        if isinstance(part, float):
            pieces.append(np.zeros(int(part * RATE)))
        else:
            pieces.append(synth.say(spec.voice, part))
    pieces.append(np.zeros(int(TAIL_S * RATE)))
    clean = np.concatenate(pieces)
    rms = _frame_rms(clean)
    target = float(rng.uniform(1800, 3500))          # callers' levels differ
    clean *= target / float(np.sqrt(np.mean(rms[rms > SPEECH_RMS] ** 2)))
    rms = _frame_rms(clean)
    loud = np.flatnonzero(rms > SPEECH_RMS)
    start, end = int(loud[0]), int(loud[-1]) + 1
    pauses = []
    previous = start
    for index in loud[1:]:
        if (index - previous - 1) * FRAME / RATE >= MIN_PAUSE_S:
            pauses.append([round((previous + 1) * 0.02, 2), round(index * 0.02, 2)])
        previous = index
    mixed = _mix_noise(rng, synth, clean, target, spec.noise)
    samples = np.clip(np.round(mixed), -32768, 32767).astype("<i2")
    text = " ".join(p for p in spec.parts if isinstance(p, str))
    return samples, {
        "file": spec.name + ".wav", "language": "en", "text": text, "sample_rate": RATE,
        "speech_start_s": round(start * 0.02, 2), "speech_end_s": round(end * 0.02, 2),
        "duration_s": round(len(samples) / RATE, 3), "pauses_s": pauses, "kind": spec.kind,
        "bot_question": spec.bot_question, "voice": spec.voice, "noise": spec.noise}


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())


def build(out: Path = DEFAULT_OUT, seed: int = 12) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    synth = Synth()
    rng = np.random.default_rng(seed)
    manifest = []
    for spec in TURNS:
        samples, entry = render(spec, synth, rng)
        write_wav(out / entry["file"], samples)
        manifest.append(entry)
    text = json.dumps(manifest, indent=1) + "\n"
    (out / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def load(out: Path = DEFAULT_OUT, seed: int = 12) -> list[dict]:
    """The set's manifest, building the set first if it is not there (or is incomplete)."""
    path = out / "manifest.json"
    if path.is_file():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if len(manifest) == len(TURNS) and all((out / e["file"]).is_file() for e in manifest):
            return manifest
    return build(out, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speech_set")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--no-commit-copy", action="store_true",
                        help="do not refresh bench/turnset/manifest.json")
    args = parser.parse_args(argv)
    started = time.monotonic()
    manifest = build(args.out, args.seed)
    if not args.no_commit_copy:
        COMMITTED_MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "manifest.json", COMMITTED_MANIFEST)
    kinds: dict[str, int] = {}
    for entry in manifest:
        kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
    total = sum(e["duration_s"] for e in manifest)
    print(f"{len(manifest)} turns, {total:.0f} s of audio, in {time.monotonic() - started:.1f} s"
          f" -> {args.out}: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
