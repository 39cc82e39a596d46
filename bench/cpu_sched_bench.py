"""Live-call STT latency with and without WhatsApp voice notes waiting: ``python -m
bench.cpu_sched_bench``.

Real whisper-tiny.en (bench/realmodels.py; int8, 2 threads, as configured) transcribes the shared
caller utterances (8 kHz, resampled to 16 kHz) as live turns, one every ``--gap-s`` seconds;
latency = from handing the turn over to having its transcript. Three runs:

* ``no notes``          - the CPU scheduler (sched/cpu.py, 2 workers), nothing else to do;
* ``4 notes, before``   - main before the scheduler: the notes (``--note-s`` s each, all four at
  once) and the turns all go to asyncio's default thread pool, each note in one piece;
* ``4 notes, scheduler``- the product now: turns in the live lane, notes in the note lane cut in
  30 s windows, one note job at a time.

Writes bench/results/cpu_sched.md (p50/p95 per run, when the notes were done). One run per
row on a shared box: read the ratios, not the milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import soxr

from appliance.sched.cpu import CpuScheduler, Lane
from appliance.sched.lanes import LaneRecognizer, NoteRecognizer
from appliance.stt.whisper import SpeechRecognizer
from bench.realmodels import RealModelUnavailable, ensure

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT / "tests" / "data" / "audio"
OUT = ROOT / "bench" / "results" / "cpu_sched.md"
Transcribe = Callable[[np.ndarray], Awaitable[object]]


def load_16k(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    return soxr.resample(pcm, rate, 16000).astype(np.float32)


def utterances() -> list[np.ndarray]:
    manifest = json.loads((AUDIO / "manifest.json").read_text())
    return [load_16k(AUDIO / e["file"]) for e in manifest if e["file"].startswith("en_")]


def note_audio(seconds: int, turns: list[np.ndarray]) -> np.ndarray:
    speech = np.concatenate(turns)
    return np.tile(speech, -(-seconds * 16000 // len(speech)))[:seconds * 16000]


async def live_turns(live: Transcribe, turns: list[np.ndarray], count: int,
                     gap_s: float) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        await live(turns[i % len(turns)])
        out.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(gap_s)
    return out


async def run(live: Transcribe, note: Transcribe | None, turns: list[np.ndarray],
              args: argparse.Namespace) -> dict[str, float]:
    started = time.perf_counter()
    notes_done: list[float] = []

    async def one_note(pcm: np.ndarray) -> None:
        await note(pcm)  # type: ignore[misc]
        notes_done.append(time.perf_counter() - started)

    tasks = []
    if note is not None:
        pcm = note_audio(args.note_s, turns)
        tasks = [asyncio.create_task(one_note(pcm)) for _ in range(4)]
        await asyncio.sleep(0.2)             # the notes are in before the first turn
    ms = await live_turns(live, turns, args.turns, args.gap_s)
    await asyncio.gather(*tasks)
    ordered = sorted(ms)
    return {"p50": statistics.median(ms), "p95": ordered[max(0, round(0.95 * len(ms)) - 1)],
            "max": ordered[-1], "notes_done_s": max(notes_done) if notes_done else 0.0}


async def main_async(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    stt = SpeechRecognizer.load(ensure("whisper-tiny.en"), threads=2, languages=("en",))
    turns = utterances()
    rows = []
    cpu = CpuScheduler(2)
    try:
        lane = LaneRecognizer(stt, cpu.executor(Lane.LIVE))
        rows.append(("no notes", await run(lane.transcribe_async, None, turns, args)))
        rows.append(("4 notes, before", await run(stt.transcribe_async, stt.transcribe_async,
                                                  turns, args)))
        notes = NoteRecognizer(stt, cpu.executor(Lane.NOTE))
        rows.append(("4 notes, scheduler", await run(lane.transcribe_async,
                                                     notes.transcribe_async, turns, args)))
    finally:
        cpu.shutdown(wait=True)
    return rows


def report(rows: list[tuple[str, dict[str, float]]], args: argparse.Namespace) -> str:
    load = os.getloadavg()[0]
    lines = [
        "# Live-call STT with voice notes waiting (bench/cpu_sched_bench.py)", "",
        f"whisper-tiny.en int8, 2 threads; {args.turns} live turns (shared en_* caller audio), "
        f"one every {args.gap_s} s; 4 voice notes of {args.note_s} s each. "
        f"{platform.machine()}, {os.cpu_count()} cores, load {load:.1f} at the end "
        "(a shared box: one run each, read the ratios).", "",
        "| run | live turn p50 ms | p95 ms | max ms | notes done after s |",
        "|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['p50']:.0f} | {r['p95']:.0f} | {r['max']:.0f} | "
                     f"{r['notes_done_s']:.1f} |")
    base = rows[0][1]["p95"]
    lines += ["", "p95 relative to no notes: " + ", ".join(
        f"{name} x{r['p95'] / base:.2f}" for name, r in rows[1:])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=16)
    parser.add_argument("--gap-s", type=float, default=0.5)
    parser.add_argument("--note-s", type=int, default=120)
    args = parser.parse_args()
    try:
        rows = asyncio.run(main_async(args))
    except RealModelUnavailable as exc:
        raise SystemExit(f"whisper-tiny.en is not available: {exc}") from None
    text = report(rows, args)
    OUT.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
