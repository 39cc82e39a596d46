"""Whisper on the real-speech turn set: the full 30 s encoder window vs the short window.

    APPLIANCE_REAL_MODELS=/work/main/tests/.cache/real-models \
        python -m bench.turn_stt_bench [--threads 2] [--out bench/results/turn_stt.md]

For every turn of bench/speech_set.py, the audio the call transcribes (8 kHz -> 16 kHz as the
call's Listener does, the turn plus 200 ms each side) and the audio up to each pause inside the
turn (what a speculative pause transcript sees) are transcribed with real Whisper tiny.en both
ways, interleaved so load weighs on both alike. Reported: compute time (median, p95) and the word
error rate against the manifest's text for whole turns; for pause prefixes, how often the two
ways give the same words (the speculative reply is released only on the same words).
"""

from __future__ import annotations

import argparse
import os
import sys
import wave
from pathlib import Path

import numpy as np

from appliance.audio.resample import make_resampler
from appliance.stt.whisper import SpeechRecognizer
from appliance.turns.text import normalise

from . import realmodels, speech_set
from .turn_metrics import percentile

ROOT = Path(__file__).resolve().parent.parent
PAD_S = 0.2


def load_16k(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float32)
    up = make_resampler(8000, 16000, dtype="float32")
    return np.concatenate([up.process(pcm / 32768.0), up.flush()])


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference words) on normalised text."""
    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)], len(ref)


def spans(entry: dict) -> list[tuple[str, float, float]]:
    """("turn" | "pause", start_s, end_s) of the audio transcribed for this entry."""
    start = max(0.0, entry["speech_start_s"] - PAD_S)
    out = [("pause", start, p_start + PAD_S) for p_start, _ in entry.get("pauses_s", [])]
    return [*out, ("turn", start, entry["speech_end_s"] + PAD_S)]


def run(threads: int, min_frames: int) -> dict:
    model = realmodels.ensure("whisper-tiny.en")
    ways = {"full": SpeechRecognizer.load(model, threads=threads),
            "short": SpeechRecognizer.load(model, threads=threads, short_window=True,
                                           short_window_min_frames=min_frames)}
    times: dict[str, list[float]] = {"full": [], "short": []}
    errors = {"full": [0, 0], "short": [0, 0]}
    same_pause = [0, 0]
    rows = []
    for entry in speech_set.load():
        audio = load_16k(speech_set.DEFAULT_OUT / entry["file"])
        for kind, lo, hi in spans(entry):
            piece = audio[int(lo * 16000):int(hi * 16000)]
            texts = {}
            for name, rec in ways.items():
                t = rec.transcribe(piece)
                times[name].append(t.compute_ms)
                texts[name] = t.text
            if kind == "pause":
                same_pause[0] += normalise(texts["full"]) == normalise(texts["short"])
                same_pause[1] += 1
                continue
            for name in ways:
                e, n = word_errors(entry["text"], texts[name])
                errors[name][0] += e
                errors[name][1] += n
            rows.append((entry["file"], entry["text"], texts["full"], texts["short"]))
    return {"times": times, "errors": errors, "same_pause": same_pause, "rows": rows,
            "threads": threads, "min_frames": min_frames, "load": os.getloadavg()}


def report(r: dict) -> str:
    lines = ["# Whisper tiny.en on the real-speech set: full vs short encoder window", "",
             f"{len(r['rows'])} turns + {r['same_pause'][1]} pause prefixes, {r['threads']} "
             f"threads, short window at least {r['min_frames'] / 100:.0f} s, load average at the end {r['load'][0]:.1f} (2 CPUs, shared: compare "
             "the columns, not the absolutes). One run, the two ways interleaved.", "",
             "| | full 30 s window | short window | ratio |", "|---|---|---|---|"]
    for q, label in ((0.5, "compute p50 (ms)"), (0.95, "compute p95 (ms)")):
        full, short = (percentile(r["times"][n], q) for n in ("full", "short"))
        lines.append(f"| {label} | {full:.0f} | {short:.0f} | {short / full:.2f} |")
    wer = {n: 100 * e / max(1, w) for n, (e, w) in r["errors"].items()}
    lines.append(f"| word error rate, whole turns (%) | {wer['full']:.1f} | {wer['short']:.1f} "
                 "| |")
    same, total = r["same_pause"]
    lines += [f"| pause prefixes with the same words both ways | {same}/{total} | | |", "",
              "Turns where the two ways differ:", "", "| file | said | full | short |",
              "|---|---|---|---|"]
    lines += [f"| {f} | {said} | {full} | {short} |" for f, said, full, short in r["rows"]
              if normalise(full) != normalise(short)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turn_stt_bench")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-frames", type=int, default=1000,
                        help="the short window's least length in 10 ms frames")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "turn_stt.md")
    args = parser.parse_args(argv)
    text = report(run(args.threads, args.min_frames))
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
