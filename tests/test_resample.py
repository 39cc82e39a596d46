import numpy as np
import pytest
import soxr

from appliance.audio.resample import Resampler, Upsampler2x, make_resampler


def tone(freq_hz, rate_hz, seconds=1.0, amplitude=0.5):
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def to_int16(x):
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


def run_chunked(resampler, x, sizes):
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(resampler.process(x[i : i + n]))
        i, k = i + n, k + 1
    out.append(resampler.flush())
    return np.concatenate(out)


def band_energy_db(y, rate_hz, lo_hz, hi_hz, reference_power):
    """Energy of y in [lo, hi) relative to a reference mean power, in dB."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / rate_hz)
    window_gain = np.sum(np.hanning(len(y)) ** 2)
    power = 2 * np.sum(spectrum[(freqs >= lo_hz) & (freqs < hi_hz)]) / (len(y) * window_gain)
    return 10 * np.log10(power / reference_power + 1e-30)


@pytest.mark.parametrize("rates", [(8000, 16000), (16000, 8000), (22050, 8000)])
def test_chunked_stream_equals_one_shot(rates):
    in_rate, out_rate = rates
    rng = np.random.default_rng(1)
    x = to_int16(0.3 * rng.standard_normal(in_rate).astype(np.float32))
    whole = run_chunked(Resampler(in_rate, out_rate), x, [len(x)])
    chunked = run_chunked(Resampler(in_rate, out_rate), x, [160, 1, 333, 7, 1024])
    assert len(chunked) == len(whole)
    assert np.max(np.abs(chunked.astype(int) - whole.astype(int))) <= 1  # no clicks at joins
    reference = soxr.resample(x, in_rate, out_rate, quality="HQ")
    assert abs(len(chunked) - len(reference)) <= 1
    n = min(len(chunked), len(reference))
    assert np.max(np.abs(chunked[:n].astype(int) - reference[:n].astype(int))) <= 2


def test_5khz_tone_does_not_alias_below_4khz():
    x = tone(5000, 16000, 2.0)
    r = Resampler(16000, 8000, dtype="float32")
    y = run_chunked(r, x, [320])[800:-800]
    alias_db = band_energy_db(y, 8000, 0, 4000, np.mean(x**2))
    print(f"16k->8k 5 kHz alias energy: {alias_db:.1f} dB")
    assert alias_db < -40


def test_22k_to_8k_rejects_5khz():
    x = tone(5000, 22050, 2.0)
    y = run_chunked(Resampler(22050, 8000, dtype="float32"), x, [441])[800:-800]
    assert band_energy_db(y, 8000, 0, 4000, np.mean(x**2)) < -40


@pytest.mark.parametrize("rates", [(16000, 8000), (22050, 8000), (8000, 16000)])
def test_1khz_tone_survives(rates):
    in_rate, out_rate = rates
    x = tone(1000, in_rate, 1.0)
    y = run_chunked(Resampler(in_rate, out_rate, dtype="float32"), x, [in_rate // 50])
    assert len(y) == pytest.approx(out_rate, abs=1)
    core = y[400:-400]
    assert 10 * np.log10(np.mean(core**2) / np.mean(x**2)) == pytest.approx(0.0, abs=0.05)
    peak_hz = np.argmax(np.abs(np.fft.rfft(core * np.hanning(len(core))))) * out_rate / len(core)
    assert peak_hz == pytest.approx(1000, abs=3)


def test_resampler_checks_dtype_and_shape():
    r = Resampler(16000, 8000)
    with pytest.raises(TypeError):
        r.process(np.zeros(10, np.float32))
    with pytest.raises(ValueError):
        r.process(np.zeros((10, 2), np.int16))
    with pytest.raises(ValueError):
        Resampler(0, 8000)


def test_resampler_reusable_after_flush_and_reset():
    x = to_int16(tone(440, 16000, 0.5))
    r = Resampler(16000, 8000)
    first = run_chunked(r, x, [320])
    second = run_chunked(r, x, [320])
    assert np.array_equal(first, second)
    r.process(x)
    r.reset()
    assert np.array_equal(run_chunked(r, x, [320]), first)


def test_same_rate_passthrough():
    x = to_int16(tone(440, 8000, 0.1))
    r = Resampler(8000, 8000)
    assert np.array_equal(r.process(x), x)
    assert r.flush().size == 0


def test_upsampler_chunked_is_exact_and_aligned():
    x = to_int16(tone(1000, 8000, 1.0))
    whole = run_chunked(Upsampler2x(), x, [len(x)])
    chunked = run_chunked(Upsampler2x(), x, [160, 1, 77, 500])
    assert len(whole) == 2 * len(x)
    assert np.array_equal(whole, chunked)
    # Filter delay is compensated: output sample k is at time k / 16000.
    ideal = tone(1000, 16000, 1.0) * 32768
    assert np.max(np.abs(whole[200:-200] - ideal[200:-200])) < 2.0


def test_upsampler_image_rejection_and_passband():
    x = tone(3000, 8000, 2.0)
    y = run_chunked(Upsampler2x(dtype="float32"), x, [160])[400:-400]
    image_db = band_energy_db(y, 16000, 4000, 8000, np.mean(x**2))
    print(f"8k->16k FIR image of 3 kHz tone: {image_db:.1f} dB")
    assert image_db < -70
    x = tone(3400, 8000, 2.0)
    y = run_chunked(Upsampler2x(dtype="float32"), x, [160])[400:-400]
    assert 10 * np.log10(np.mean(y**2) / np.mean(x**2)) == pytest.approx(0.0, abs=0.05)


def test_upsampler_latency_is_small():
    up = Upsampler2x()
    assert up.delay_ms < 3.0
    out = [len(up.process(np.zeros(160, np.int16))) for _ in range(5)]
    assert out[0] == 320 - 39 and out[1:] == [320] * 4  # only the first chunk is short
    assert len(up.flush()) == 39


def test_upsampler_tiny_stream_flush():
    up = Upsampler2x()
    assert len(up.process(np.ones(5, np.int16) * 1000)) == 0
    assert len(up.flush()) == 10


def test_make_resampler_choice():
    assert isinstance(make_resampler(8000, 16000), Upsampler2x)
    assert isinstance(make_resampler(8000, 16000, low_latency=False), Resampler)
    assert isinstance(make_resampler(22050, 8000), Resampler)
