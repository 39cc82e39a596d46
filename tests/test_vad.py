import json
import os
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from appliance.turns.decision import Commit, TurnDetector, TurnParams, TurnStarted
from appliance.audio.resample import Upsampler2x
from appliance.audio.vad import WINDOW_MS, SileroVad, VadError, bundled_model_path


def _find_audio_dir() -> Path | None:
    """Caller WAVs: $APPLIANCE_TEST_AUDIO_DIR, tests/data/audio, or ../shared/audio."""
    here = Path(__file__).resolve().parent
    candidates = [os.environ.get("APPLIANCE_TEST_AUDIO_DIR"), here / "data" / "audio",
                  here.parents[1] / "shared" / "audio"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "manifest.json").is_file():
            return Path(candidate)
    return None


AUDIO_DIR = _find_audio_dir()
needs_audio = pytest.mark.skipif(AUDIO_DIR is None, reason="caller WAVs not found")
MANIFEST = json.loads((AUDIO_DIR / "manifest.json").read_text()) if AUDIO_DIR else []
SPEECH = [e for e in MANIFEST if e["speech_start_s"] is not None]
NO_SPEECH = [e for e in MANIFEST if e["speech_start_s"] is None]


@pytest.fixture(scope="module")
def vad():
    return SileroVad.load()


def read_8k(name):
    with wave.open(str(AUDIO_DIR / name), "rb") as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def probabilities(vad, pcm_8k, frame_samples=160):
    """Stream 20 ms phone frames through 8k->16k and the VAD, as a call does."""
    up, stream, probs = Upsampler2x(), vad.stream(), []
    for i in range(0, len(pcm_8k), frame_samples):
        probs += stream.process(up.process(pcm_8k[i : i + frame_samples]))
    probs += stream.process(up.flush())
    return np.array(probs)


@pytest.mark.parametrize("entry", SPEECH, ids=lambda e: e["file"])
def test_speech_probability_high_inside_speech_low_outside(vad, entry):
    p = probabilities(vad, read_8k(entry["file"]))
    t = (np.arange(len(p)) + 0.5) * WINDOW_MS / 1000  # window centres, seconds
    inside = p[(t >= entry["speech_start_s"] + 0.05) & (t <= entry["speech_end_s"] - 0.05)]
    before = p[t < entry["speech_start_s"] - 0.1]
    after = p[t > entry["speech_end_s"] + 0.3]
    assert np.median(inside) > 0.8
    assert np.mean(inside > 0.5) > 0.6  # en_bye pauses ~300 ms twice between phrases
    assert before.max() < 0.2
    assert after.max() < 0.2


@pytest.mark.parametrize("entry", NO_SPEECH, ids=lambda e: e["file"])
def test_no_speech_in_silence_and_noise(vad, entry):
    p = probabilities(vad, read_8k(entry["file"]))
    assert len(p) == int(entry["duration_s"] * 1000) // WINDOW_MS
    assert p.max() < 0.2


@needs_audio
def test_streaming_matches_faster_whisper_batched(vad):
    from faster_whisper.vad import SileroVADModel

    x16 = Upsampler2x(dtype="float32")
    audio = read_8k("en_phone.wav").astype(np.float32) / 32768
    audio16 = np.concatenate([x16.process(audio), x16.flush()])
    audio16 = audio16[: len(audio16) // 512 * 512]
    reference = SileroVADModel(bundled_model_path())(audio16.copy()).reshape(-1)
    stream = vad.stream()
    ours = []
    for i in range(0, len(audio16), 320):  # 20 ms pieces: windows straddle calls
        ours += stream.process(audio16[i : i + 320])
    assert np.allclose(ours, reference, atol=1e-5)


@needs_audio
def test_chunking_and_dtype_do_not_matter(vad):
    pcm = read_8k("en_yes.wav")
    up = Upsampler2x()
    pcm16 = np.concatenate([up.process(pcm), up.flush()])
    whole = vad.stream().process(pcm16)
    s = vad.stream()
    pieces = []
    for i in range(0, len(pcm16), 100):
        pieces += s.process(pcm16[i : i + 100])
    floats = vad.stream().process(pcm16.astype(np.float32) / 32768)
    assert np.allclose(whole, pieces, atol=1e-6)
    assert np.allclose(whole, floats, atol=1e-6)
    assert len(whole) == len(pcm16) // 512


@needs_audio
def test_buffers_remainder_and_reset(vad):
    s = vad.stream()
    assert s.process(np.zeros(500, np.int16)) == []
    assert s.pending_samples == 500
    assert len(s.process(np.zeros(600, np.int16))) == 2
    assert s.pending_samples == 76
    pcm = read_8k("en_yes.wav")
    up = Upsampler2x()
    pcm16 = np.concatenate([up.process(pcm), up.flush()])
    fresh = vad.stream().process(pcm16)
    s.reset()
    assert s.pending_samples == 0
    assert np.allclose(s.process(pcm16), fresh, atol=1e-6)


def test_rejects_bad_input(vad):
    with pytest.raises(TypeError):
        vad.stream().process(np.zeros(512, np.float64))
    with pytest.raises(ValueError):
        vad.stream().process(np.zeros((512, 2), np.int16))


def test_missing_or_invalid_model(tmp_path):
    with pytest.raises(VadError) as missing:
        SileroVad.load(str(tmp_path / "nope.onnx"))
    assert missing.value.code == "model_missing"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(VadError) as invalid:
        SileroVad.load(str(bad))
    assert invalid.value.code == "model_invalid"


def test_window_cost(vad):
    s = vad.stream()
    window = (np.random.default_rng(0).standard_normal(512) * 3000).astype(np.int16)
    for _ in range(20):
        s.process(window)
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        s.process(window)
    ms = (time.perf_counter() - t0) * 1000 / n
    print(f"Silero VAD: {ms:.3f} ms per 32 ms window (1 thread)")
    assert ms < 5.0


@pytest.mark.parametrize("entry", SPEECH, ids=lambda e: e["file"])
def test_vad_plus_turn_detector_one_turn_per_file(vad, entry):
    """Real audio through VAD and the call's turn detector, no transcript (the pending wait)."""
    detector = TurnDetector()
    events = []
    for prob in probabilities(vad, read_8k(entry["file"])):
        events += detector.frame(prob, WINDOW_MS)
    starts = [e for e in events if isinstance(e, TurnStarted)]
    turns = [e.decision for e in events if isinstance(e, Commit)]
    assert len(starts) == 1 and len(turns) == 1
    assert abs(starts[0].at_ms - entry["speech_start_s"] * 1000) <= 100
    assert abs(turns[0].end_of_speech_ms - entry["speech_end_s"] * 1000) <= 100
    assert turns[0].wait_ms == TurnParams().base_wait_ms  # no words came: never a short wait


@pytest.mark.parametrize("entry", NO_SPEECH, ids=lambda e: e["file"])
def test_vad_plus_turn_detector_nothing_in_silence(vad, entry):
    detector = TurnDetector()
    events = []
    for prob in probabilities(vad, read_8k(entry["file"])):
        events += detector.frame(prob, WINDOW_MS)
    assert events == []


@needs_audio
@pytest.mark.parametrize("before,after", [("en_long.wav", "en_human.wav"),
                                          ("en_price.wav", "en_hours.wav")])
def test_after_a_long_silence_the_callers_next_words_are_heard_from_their_onset(
        vad, before, after):
    """The call's Listener carries Silero's state over the silence between two turns. The state
    the last speaker left made the next onset weak (p ~0.45 for "Can I", "What are") at some
    alignments of the 32 ms windows, so the barge-in opened a window ~200-650 ms late and the
    bot talked on over the caller. After a second of silence the state is reset: at every
    alignment tried, the caller's speech is voiced from its onset (audio timeline, no clock)."""
    from appliance.audio.bargein import BargeInDetector, BargeInParams, PauseBot
    from appliance.call.listener import Listener
    from appliance.simulate import read_wav_ulaw

    entry = next(e for e in SPEECH if e["file"] == after)
    first, second = read_wav_ulaw(AUDIO_DIR / before), read_wav_ulaw(AUDIO_DIR / after)
    late = {}
    for gap_frames in range(100, 130, 3):           # 2.0-2.6 s of silence, 20 ms frames
        stream = first + b"\xff" * 160 * gap_frames + second
        onset_ms = len(first) // 8 + gap_frames * 20 + entry["speech_start_s"] * 1000
        listener, barge = Listener(vad), BargeInDetector(BargeInParams(pause_after_ms=140))
        pause = None
        for i in range(0, len(stream), 160):
            for p in listener.feed(stream[i:i + 160]):
                if barge.now_ms < onset_ms - 500:   # the bot is not speaking yet
                    barge.reset(at_ms=barge.now_ms + WINDOW_MS)
                    continue
                events = [e for e in barge.process(p, WINDOW_MS) if isinstance(e, PauseBot)]
                pause = pause or (events[0] if events else None)
        assert pause is not None, gap_frames
        late[gap_frames] = round(pause.onset_ms - onset_ms)
    assert all(ms <= 100 for ms in late.values()), late
