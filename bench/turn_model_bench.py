"""smart-turn v3.2 on this machine: ``python -m bench.turn_model_bench``.

1. Timing: ``SmartTurnModel.predict`` (numpy features + ONNX run) on 8 s windows, 1 and 2
   intra-op threads; features alone. Median and p95 of --repeats runs.
2. Phone audio: the same Piper joe utterances (complete sentences and phrases cut before their
   end) scored from wideband 16 kHz (22.05 kHz -> 16 kHz) and from phone audio (-> 8 kHz ->
   16 kHz, as a call hears them).
3. The shared 8 kHz caller WAVs: P(complete) at the end of each turn (+200 ms) and at every pause
   inside it that the VAD turns into a Pause (the moments the decision machine asks).
4. The whole decision (tests/support/turn_replay.py: Silero VAD, Whisper tiny.en, smart-turn, the
   TurnDetector with its default TurnParams) over the caller WAVs: what ended each turn, the wait,
   and the silence waited after the VAD's end of speech. Signals are delivered at once, so add the
   STT/model time (both run in parallel from Pause, 160 ms into the silence) for a real call.

Writes bench/results/turn_model.md. Needs the real weights (bench/realmodels.py); export
APPLIANCE_REAL_MODELS to share the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from appliance.audio.resample import Resampler
from appliance.audio.vad import WINDOW_MS, SileroVad
from appliance.tts.piper import Voice
from appliance.turns.decision import Pause, TurnDetector, TurnStarted
from appliance.turns.smart_turn import (
    SmartTurnModel,
    TurnModelOptions,
    log_mel_features,
)
from bench.realmodels import ensure
from tests.support.turn_replay import phone_to_16k, read_wav, to_phone

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT / "tests" / "data" / "audio"
OUT = ROOT / "bench" / "results" / "turn_model.md"
COMPLETE = ["What are your opening hours on Friday?", "I'd like to book a table for two.",
            "Yes, that's right.", "Can I speak to someone about my order?",
            "My number is 052 881 3344.", "No, thank you. Goodbye."]
CUT = ["I'd like to book a table for", "My number is 052,", "Can I speak to someone about",
       "Um,", "I'd like to come in on", "My address is"]


READING = """## Reading

- Inference is dominated by the ONNX run; 2 intra-op threads are slower than 1 on a shared
  2-core box, so the product uses 1 (TurnModelOptions). It starts at Pause (160 ms into the
  silence) in parallel with Whisper, whose time it roughly matches, so it adds little to a turn.
- 8 kHz phone audio upsampled to 16 kHz scores about like the 16 kHz original for most
  utterances (within a few hundredths), but single utterances move a lot either way; the model
  is not reliable on its own on phone audio: finished caller turns score as low as 0.1 (en_bye,
  en_human, en_phone, he_book) and some pauses inside a turn score above 0.8 (en_bye after "No,",
  en_long before ", and"). TTS phrases cut before their end often score high too.
- Hence the decision table (appliance/turns/decision.py): the transcript leads (an unfinished
  transcript always holds the turn open up to 1.5 s; the model cannot end it), and the model
  only shortens (p >= 0.7) or lengthens (p < 0.3) the wait the text allows.
"""


def _ms(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def timing(path: Path, pcm: np.ndarray, repeats: int) -> list[str]:
    rows = ["| what | median ms | p95 ms |", "|---|---:|---:|"]
    median, p95 = _ms(lambda: log_mel_features(pcm), repeats)
    rows.append(f"| features (numpy) | {median:.1f} | {p95:.1f} |")
    for threads in (1, 2):
        model = SmartTurnModel.load(path, TurnModelOptions(intra_op_threads=threads))
        model.predict(pcm)
        median, p95 = _ms(lambda m=model: m.predict(pcm), repeats)
        rows.append(f"| predict, {threads} intra-op thread(s) | {median:.1f} | {p95:.1f} |")
    return rows


def wideband_vs_phone(model: SmartTurnModel, voice: Voice) -> list[str]:
    rows = ["| utterance | kind | P 16 kHz | P phone (8 kHz -> 16 kHz) |", "|---|---|---:|---:|"]
    for kind, texts in (("complete", COMPLETE), ("cut", CUT)):
        for text in texts:
            audio = np.concatenate([p.samples for p in voice.synthesize(text)])
            rate = voice.sample_rate_hz
            up = Resampler(rate, 16000, dtype="int16")
            wide = np.concatenate([up.process(audio), up.flush()]).astype(np.float32) / 32768
            phone = phone_to_16k(to_phone(audio, rate))
            rows.append(f"| {text} | {kind} | {model.predict(wide):.3f} | "
                        f"{model.predict(phone):.3f} |")
    return rows


def caller_wavs(model: SmartTurnModel, vad: SileroVad) -> list[str]:
    rows = ["| file | P at inner pauses (ms of speech) | P at end + 200 ms |", "|---|---|---:|"]
    manifest = json.loads((AUDIO / "manifest.json").read_text())
    for entry in manifest:
        if entry["speech_start_s"] is None:
            continue
        pcm = phone_to_16k(read_wav(AUDIO / entry["file"])[0])
        end = int((entry["speech_end_s"] + 0.2) * 16000)
        inner = []
        det, onset = TurnDetector(), 0
        for p in vad.stream().process(pcm):
            for event in det.frame(p, WINDOW_MS):
                if isinstance(event, TurnStarted):
                    onset = event.at_ms
                if isinstance(event, Pause) and event.at_ms < entry["speech_end_s"] * 1000 - 100:
                    audio = pcm[max(0, onset - 200) * 16:event.at_ms * 16]
                    inner.append(f"{model.predict(audio):.2f} ({event.at_ms - onset})")
        rows.append(f"| {entry['file']} | {', '.join(inner) or '-'} | "
                    f"{model.predict(pcm[:end]):.3f} |")
    return rows


def decisions(vad: SileroVad, model: SmartTurnModel) -> list[str]:
    from appliance.stt.whisper import SpeechRecognizer
    from tests.support.turn_replay import replay

    stt = SpeechRecognizer.load(ensure("whisper-tiny.en"), threads=1, languages=("en",))
    rows = ["| file | ended_by | wait ms | silence ms | pauses | final transcript |",
            "|---|---|---:|---:|---:|---|"]
    waits = []
    for entry in json.loads((AUDIO / "manifest.json").read_text()):
        if entry["speech_start_s"] is None:
            continue
        pcm = phone_to_16k(read_wav(AUDIO / entry["file"])[0])
        result = replay(np.concatenate([pcm, np.zeros(3 * 16000, np.float32)]), vad, stt, model)
        for d in result.decisions:
            waits.append(d.silence_ms)
            rows.append(f"| {entry['file']} | {d.ended_by} | {d.wait_ms} | {d.silence_ms} | "
                        f"{d.speculative_starts} | {d.text} |")
    rows += ["", (f"Silence waited: median {statistics.median(waits):.0f} ms, max {max(waits)} "
                  "ms (the old endpointer: 512 ms for every turn).")]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    path = ensure("smart-turn-v3.2")
    pcm = phone_to_16k(read_wav(AUDIO / "en_long.wav")[0])[: 8 * 16000]
    model = SmartTurnModel.load(path)
    lines = ["# smart-turn v3.2 (int8 ONNX) on this machine", "",
             (f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start "
              f"(other helpers share the machine). One run, {args.repeats} repeats per timing."),
             "",
             "## Inference time (8 s window)", "", *timing(path, pcm, args.repeats), "",
             "## Wideband vs phone audio (Piper joe)", "",
             *wideband_vs_phone(model, Voice.load(ensure("piper-joe"), threads=1)), "",
             "## Shared 8 kHz caller WAVs", "", *caller_wavs(model, SileroVad.load()), "",
             "## Decisions over the caller WAVs", "", *decisions(SileroVad.load(), model), "",
             READING]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
