"""STT and TTS stage timings on this machine: ``python -m bench.stt_tts_bench``.

Whisper: the shared caller utterances (8 kHz phone audio resampled to 16 kHz) through
``SpeechRecognizer`` with the generated test model and with random-weight models of the real
whisper-tiny and whisper-base shapes (tests/support/models.py), int8, 2 threads, beam 1, in four modes:

* ``stock 1 lang``   - one configured language: WhisperModel.transcribe (the default path);
* ``fw detect+transcribe`` - several languages the plain faster-whisper way
  (model.detect_language + model.transcribe: two encoder passes), for comparison only;
* ``one-pass 3 langs`` - several languages, SpeechRecognizer's one-encoder-pass path;
* ``short_window``   - the encoder sees the speech + 1 s instead of 30 s (the flag).

Piper: time to first audio of a first clause and of a whole reply, with the generated test
voice (its acoustic model is trivial, so this measures phonemization and overhead only).

Writes bench/results/stt_tts.md (medians). Options: --repeats N, --shapes test,tiny,base.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr

from appliance.stt.whisper import SpeechRecognizer
from appliance.tts.clauses import ClauseSplitter
from appliance.tts.piper import Voice

ROOT = Path(__file__).resolve().parents[1]
# The caller utterances: shared/audio beside the checkout, else the copy in tests/data/audio.
AUDIO_DIR = next((d for d in (ROOT.parent / "shared" / "audio", ROOT / "tests" / "data" / "audio")
                  if (d / "manifest.json").is_file()), ROOT / "tests" / "data" / "audio")
CACHE_DIR = ROOT / "bench" / ".cache" / "models"
RESULTS = ROOT / "bench" / "results" / "stt_tts.md"
THREADS = 2
LANGS = ("en", "he", "ru")
UTTERANCES = ["en_yes", "en_bye", "en_hours", "en_price", "en_human", "en_book", "he_book",
              "ru_price", "en_phone", "en_long", "silence_5s", "noise_5s"]
REPLY_HE = "שלום, תודה שהתקשרת למספרה של דנה. מתי נוח לך להגיע?"
REPLY = ("Hello, thanks for calling Dana's Salon. We are open Sunday to Thursday from nine to "
         "six, and on Friday until one. Would you like to book an appointment?")


def load_utterance(name: str) -> np.ndarray:
    with wave.open(str(AUDIO_DIR / f"{name}.wav")) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return soxr.resample(pcm.astype(np.float32) / 32768.0, 8000, 16000).astype(np.float32)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench_whisper(shape: str, audio: dict[str, np.ndarray], repeats: int) -> dict[str, object]:
    from tests.support.models import make_whisper

    path = make_whisper(CACHE_DIR, shape=shape)
    stock = SpeechRecognizer.load(path, threads=THREADS, languages=("en",))
    multi = SpeechRecognizer.load(path, threads=THREADS, languages=LANGS)
    short = SpeechRecognizer.load(path, threads=THREADS, languages=("en",), short_window=True)
    short_multi = SpeechRecognizer.load(path, threads=THREADS, languages=LANGS,
                                        short_window=True)
    model = stock._model

    def fw_two_pass(pcm: np.ndarray) -> None:
        model.detect_language(audio=pcm)
        segments, _ = model.transcribe(pcm, language="en", beam_size=1, without_timestamps=True,
                                       condition_on_previous_text=False, vad_filter=False)
        list(segments)

    modes: dict[str, Callable[[np.ndarray], object]] = {
        "stock 1 lang": stock.transcribe,
        "fw detect+transcribe": fw_two_pass,
        "one-pass 3 langs": multi.transcribe,
        "short_window 1 lang": short.transcribe,
        "short_window 3 langs": short_multi.transcribe,
    }
    rows = {}
    for name, pcm in audio.items():
        rows[name] = {mode: median_ms(functools.partial(fn, pcm), repeats)
                      for mode, fn in modes.items()}
    encoder = {}
    from faster_whisper.audio import pad_or_trim
    features = model.feature_extractor(audio["en_book"])
    for frames in (3000, 1000, 700, 400):
        window = pad_or_trim(features[:, :-1], frames)
        encoder[frames] = median_ms(functools.partial(model.encode, window), repeats)
    return {"modes": list(modes), "rows": rows, "encoder": encoder}


def bench_piper(repeats: int) -> dict[str, float]:
    from tests.support.models import make_piper_voice

    path = make_piper_voice(CACHE_DIR)
    started = time.perf_counter()
    cold = Voice.load(path, threads=THREADS, warm_up=False)
    load_ms = (time.perf_counter() - started) * 1000
    first_clause = _first_piece(REPLY)

    def first_audio(voice: Voice, text: str) -> float:
        started = time.perf_counter()
        next(iter(voice.synthesize(text)))
        return (time.perf_counter() - started) * 1000

    cold_ms = first_audio(cold, first_clause)
    warm = Voice.load(path, threads=THREADS)
    clause_ms = statistics.median(first_audio(warm, first_clause) for _ in range(repeats))
    reply_ms = median_ms(lambda: list(warm.synthesize(REPLY)), repeats)
    audio_ms = sum(p.duration_ms for p in warm.synthesize(REPLY))
    # Hebrew voices phonemize with piper's Nakdimon diacritizer (an ONNX model) instead of
    # espeak-ng: the same test graph behind a "phoneme_type": "hebrew" config measures it.
    he_path = CACHE_DIR / "piper-test-he.onnx"
    config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    config.update(phoneme_type="hebrew", espeak={"voice": "he"})
    Path(f"{he_path}.json").write_text(json.dumps(config), encoding="utf-8")
    shutil.copyfile(path, he_path)
    started = time.perf_counter()
    hebrew = Voice.load(he_path, threads=THREADS)
    he_load_ms = (time.perf_counter() - started) * 1000
    he_first = _first_piece(REPLY_HE)
    he_clause_ms = statistics.median(first_audio(hebrew, he_first) for _ in range(repeats))
    return {"load_ms": load_ms, "cold_first_audio_ms": cold_ms, "first_clause": first_clause,
            "first_clause_ms": clause_ms, "reply_ms": reply_ms, "reply_audio_ms": audio_ms,
            "he_load_ms": he_load_ms, "he_first_clause": he_first,
            "he_first_clause_ms": he_clause_ms}


def _first_piece(text: str) -> str:
    splitter = ClauseSplitter()
    for token in text.split(" "):
        pieces = splitter.feed(token + " ")
        if pieces:
            return pieces[0]
    return splitter.flush()[0]


def write_report(whisper: dict[str, dict[str, object]], piper: dict[str, float],
                 audio: dict[str, np.ndarray], repeats: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import ctranslate2
    import faster_whisper

    lines = [
        "# STT / TTS stage timings",
        "",
        (f"Machine: {os.cpu_count()} cores ({cpu}); faster-whisper {faster_whisper.__version__}, "
         f"ctranslate2 {ctranslate2.__version__}; int8, {THREADS} threads, beam 1. "
         f"Medians of {repeats} runs per cell, in ms. Other work on the machine adds noise "
         f"(load average {os.getloadavg()[0]:.1f} when the run ended)."),
        ("Models: random-weight stand-ins from tests/support/models.py (`test` = 64-wide, 2+2 layers; "
         "`tiny`/`base` = the real whisper-tiny/base dimensions), so these are speed numbers "
         "only; accuracy of the short window cannot be judged with them."),
        "",
    ]
    for shape, result in whisper.items():
        modes = result["modes"]
        lines += [f"## Whisper `{shape}`", "",
                  "| utterance | audio s | " + " | ".join(modes) + " |",
                  "|---|---:|" + "---:|" * len(modes)]
        medians = {mode: [] for mode in modes}
        for name, row in result["rows"].items():
            cells = []
            for mode in modes:
                medians[mode].append(row[mode])
                cells.append(f"{row[mode]:.0f}")
            lines.append(f"| {name} | {len(audio[name]) / 16000:.1f} | " + " | ".join(cells)
                         + " |")
        lines.append("| **median** | | " + " | ".join(
            f"**{statistics.median(medians[m]):.0f}**" for m in modes) + " |")
        base = statistics.median(medians["stock 1 lang"])
        short = statistics.median(medians["short_window 1 lang"])
        multi = statistics.median(medians["one-pass 3 langs"])
        two = statistics.median(medians["fw detect+transcribe"])
        lines += ["", (f"short_window speed-up (1 lang): {base / short:.1f}x; one encoder pass "
                       f"for 3 languages saves {two - multi:.0f} ms vs detect+transcribe."), "",
                  "Encoder alone on en_book (frames -> ms): " + ", ".join(
                      f"{f} -> {ms:.1f}" for f, ms in result["encoder"].items()), ""]
    lines += [
        "## Piper (generated test voice, 16 kHz)", "",
        f"- load: {piper['load_ms']:.0f} ms",
        (f"- first clause \"{piper['first_clause']}\": first audio "
         f"{piper['first_clause_ms']:.1f} ms warm, {piper['cold_first_audio_ms']:.1f} ms on a "
         "cold voice (no warm-up)"),
        (f"- whole reply ({len(REPLY)} chars, {piper['reply_audio_ms']:.0f} ms of audio): "
         f"{piper['reply_ms']:.1f} ms"),
        (f"- Hebrew (Nakdimon diacritizer + rule-based G2P instead of espeak-ng): load with "
         f"warm-up {piper['he_load_ms']:.0f} ms; first clause \"{piper['he_first_clause']}\": "
         f"first audio {piper['he_first_clause_ms']:.1f} ms warm"),
        ("- The test voice's acoustic model is a trivial graph: these numbers are espeak-ng "
         "phonemization plus overhead. A real low/medium voice adds its VITS inference "
         "(faster than real time on a Pi 4, per latency.md)."),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stt_tts_bench")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", default="test,tiny,base")
    args = parser.parse_args()
    audio = {name: load_utterance(name) for name in UTTERANCES}
    whisper = {}
    for shape in args.shapes.split(","):
        print(f"whisper {shape} ...", flush=True)
        whisper[shape] = bench_whisper(shape, audio, args.repeats)
    print("piper ...", flush=True)
    piper = bench_piper(max(args.repeats, 10))
    report = write_report(whisper, piper, audio, args.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report + "\n", encoding="utf-8")
    print(report)
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
