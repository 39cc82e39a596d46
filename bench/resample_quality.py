"""How much of Piper's 22.05 kHz output above 4 kHz folds back into the 8 kHz phone band.

Everything an 8 kHz stream carries is below 4 kHz, so for an input with no content below 4 kHz
every bit of output energy is aliasing. Three ways to go 22050 -> 8000 Hz are compared:

- ``Resampler``: appliance/audio/resample.py (soxr HQ, streamed), as PhoneSpeech uses it;
- naive decimation: keep the nearest input sample for each output instant, no filter;
- ``audioop.ratecv``: the standard library's converter (linear interpolation, no anti-alias
  filter; deprecated, removed in Python 3.13), which telephony samples often use.

Signals: tones from 4.5 to 10 kHz, a 4-11 kHz sweep, and a speech-like buzz (137 Hz harmonics up
to 11 kHz, falling 6 dB per octave: most energy is in band, as in speech). For the buzz the
output spectrum is split into the harmonics below 4 kHz (signal) and everything else (aliases):
the result is the alias-to-signal ratio. Mu-law itself adds noise at about -38 dB of the
signal, so aliasing well below that is inaudible on a phone line.
"""

from __future__ import annotations

import warnings

import numpy as np

from appliance.audio.resample import Resampler

IN_RATE, OUT_RATE = 22050, 8000
SECONDS = 2.0
AMPLITUDE = 0.5          # of full scale
TONES_HZ = (4500, 5000, 6000, 7000, 8000, 10000)
PASSBAND_HZ = (1000, 3000)
F0 = 137.0


def _soxr(x: np.ndarray) -> np.ndarray:
    r = Resampler(IN_RATE, OUT_RATE, dtype="float32")
    out = [r.process(x[i:i + 2205].astype(np.float32)) for i in range(0, len(x), 2205)]
    return np.concatenate(out + [r.flush()])


def _decimate(x: np.ndarray) -> np.ndarray:
    n = int(len(x) * OUT_RATE / IN_RATE)
    idx = np.minimum(np.round(np.arange(n) * IN_RATE / OUT_RATE).astype(int), len(x) - 1)
    return x[idx]


def _ratecv(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    pcm = np.clip(np.rint(x * 32767), -32768, 32767).astype("<i2").tobytes()
    out, _ = audioop.ratecv(pcm, 2, 1, IN_RATE, OUT_RATE, None)
    return np.frombuffer(out, dtype="<i2").astype(np.float64) / 32767


METHODS = {"appliance Resampler (soxr HQ)": _soxr, "naive decimation": _decimate,
           "audioop.ratecv": _ratecv}


def _core(y: np.ndarray) -> np.ndarray:
    """Drop 0.25 s at each end (filter start-up and tail)."""
    cut = int(0.25 * OUT_RATE)
    return y[cut:-cut]


def _power(y: np.ndarray) -> float:
    return float(np.mean(np.square(y, dtype=np.float64)))


def _db(ratio: float) -> float:
    return round(10 * np.log10(max(ratio, 1e-30)), 1)


def _signals() -> dict[str, np.ndarray]:
    t = np.arange(int(SECONDS * IN_RATE)) / IN_RATE
    signals = {f"tone {f / 1000:g} kHz": AMPLITUDE * np.sin(2 * np.pi * f * t)
               for f in TONES_HZ}
    f_lo, f_hi = 4000.0, 11000.0
    phase = 2 * np.pi * (f_lo * t + (f_hi - f_lo) * t ** 2 / (2 * SECONDS))
    signals["sweep 4-11 kHz"] = AMPLITUDE * np.sin(phase)
    return signals


def _buzz() -> tuple[np.ndarray, list[float]]:
    t = np.arange(int(SECONDS * IN_RATE)) / IN_RATE
    harmonics = [F0 * k for k in range(1, int(11000 / F0) + 1)]
    x = sum(np.sin(2 * np.pi * f * t + k) / k for k, f in enumerate(harmonics, 1))
    return AMPLITUDE * x / np.max(np.abs(x)), harmonics


def _alias_to_signal(y: np.ndarray, harmonics: list[float]) -> float:
    y = _core(y)
    n = np.arange(len(y)) / len(y)
    window = (0.35875 - 0.48829 * np.cos(2 * np.pi * n) + 0.14128 * np.cos(4 * np.pi * n)
              - 0.01168 * np.cos(6 * np.pi * n))            # Blackman-Harris: -92 dB sidelobes
    spectrum = np.abs(np.fft.rfft(y * window)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / OUT_RATE)
    near = np.zeros(len(freqs), dtype=bool)
    for f in harmonics:
        if f < OUT_RATE / 2:
            near |= np.abs(freqs - f) <= 5.0
    return _db(spectrum[~near].sum() / spectrum[near].sum())


def measure() -> dict:
    """{"aliasing": [{signal, method: dB}], "passband": [...], "buzz": {method: dB}}."""
    rows = []
    for name, x in _signals().items():
        row = {"signal": name}
        for method, fn in METHODS.items():
            row[method] = _db(_power(_core(fn(x))) / _power(x))
        rows.append(row)
    passband = []
    t = np.arange(int(SECONDS * IN_RATE)) / IN_RATE
    for f in PASSBAND_HZ:
        x = AMPLITUDE * np.sin(2 * np.pi * f * t)
        row = {"signal": f"tone {f / 1000:g} kHz (in band)"}
        for method, fn in METHODS.items():
            row[method] = _db(_power(_core(fn(x))) / _power(x))
        passband.append(row)
    buzz, harmonics = _buzz()
    return {"aliasing": rows, "passband": passband,
            "buzz": {m: _alias_to_signal(fn(buzz), harmonics) for m, fn in METHODS.items()}}
