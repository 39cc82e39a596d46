"""pipecat's smart-turn v3 end-of-turn model (BSD-2, int8 ONNX, Whisper-tiny encoder).

Input: the current turn's audio, 16 kHz mono, up to 8 s (the last 8 s are kept; shorter audio is
padded with zeros at the FRONT). Output: the probability that the speaker has finished the turn.

Features are computed here with numpy, matching ``transformers.WhisperFeatureExtractor
(chunk_length=8)`` as pipecat feeds it (``do_normalize=True``): the 8 s waveform is normalised to
zero mean and unit variance, a centred (reflect-padded) 400-point STFT with a periodic Hann window
and hop 160 gives 801 power frames, an 80-band Slaney mel filterbank (0-8 kHz, area-normalised)
maps them to mel, then log10 (floor 1e-10), the last frame is dropped, values are clamped to
(max - 8) and scaled as (x + 4) / 4. Result: float32 (80, 800), fed as ``input_features``
(1, 80, 800); the model returns a sigmoid probability.

``SmartTurnModel.load`` opens the one shared ``onnxruntime.InferenceSession`` (1 intra-op thread,
sequential); ``predict`` is blocking and thread-safe, ``predict_async`` runs it in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
WINDOW_S = 8
WINDOW_SAMPLES = SAMPLE_RATE_HZ * WINDOW_S  # 128,000
N_FFT = 400
HOP = 160
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP  # 800
INPUT_NAME = "input_features"


class TurnModelError(Exception):
    """Turn-model failure with a short machine code (``model_missing``, ``model_invalid``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Hz -> Slaney mel: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log_part, hz * 3.0 / 200.0)


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_part = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log_part, mel * 200.0 / 3.0)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT,
                   rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, Slaney scale and area normalisation."""
    edges = _slaney_hz(np.linspace(_slaney_mel(0.0), _slaney_mel(rate_hz / 2), n_mels + 2))
    bins = np.linspace(0, rate_hz // 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    triangles = np.clip(np.minimum(rising, falling), 0.0, None)
    return triangles * (2.0 / (upper - lower))


_FILTERS = mel_filterbank()
_HANN = np.hanning(N_FFT + 1)[:-1]  # periodic Hann


def fit_window(pcm: np.ndarray) -> np.ndarray:
    """The last 8 s of ``pcm`` (float32), zero-padded at the front to exactly 8 s."""
    x = np.asarray(pcm, dtype=np.float32).reshape(-1)
    if x.size >= WINDOW_SAMPLES:
        return x[-WINDOW_SAMPLES:]
    return np.concatenate([np.zeros(WINDOW_SAMPLES - x.size, dtype=np.float32), x])


def log_mel_features(pcm: np.ndarray) -> np.ndarray:
    """float32 (80, 800) Whisper log-mel features of the 8 s window of ``pcm`` (see module)."""
    x = fit_window(pcm)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2  # (801, 201)
    log_mel = np.log10(np.maximum(_FILTERS @ power.T, 1e-10))[:, :N_FRAMES]
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return ((log_mel + 4.0) / 4.0).astype(np.float32)


def to_float32(pcm: np.ndarray) -> np.ndarray:
    """16 kHz mono int16 or float32 in [-1, 1] -> float32."""
    if pcm.ndim != 1:
        raise ValueError("audio must be mono (1-D)")
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    if pcm.dtype == np.float32:
        return pcm
    raise TypeError(f"expected int16 or float32 samples, got {pcm.dtype}")


@dataclass(frozen=True)
class TurnModelOptions:
    intra_op_threads: int = 1  # ~one core per inference; calls run side by side on 2 cores
    min_audio_ms: int = 100  # shorter input is not worth a prediction: predict() returns None


class SmartTurnModel:
    """The shared model. Create with ``SmartTurnModel.load(path)`` once at start-up."""

    def __init__(self, session: object, model_path: str,
                 options: TurnModelOptions = TurnModelOptions()) -> None:
        self._session = session
        self.model_path = model_path
        self.options = options

    @classmethod
    def load(cls, model_path: str | os.PathLike[str],
             options: TurnModelOptions = TurnModelOptions()) -> SmartTurnModel:
        import onnxruntime  # heavy import: only when the model is actually loaded
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        path = os.fspath(model_path)
        if not os.path.isfile(path):
            raise TurnModelError("model_missing", f"smart-turn model not found at {path}")
        opts = onnxruntime.SessionOptions()
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = options.intra_op_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(
                path, sess_options=opts, providers=["CPUExecutionProvider"])
        except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf) as exc:
            raise TurnModelError("model_invalid", f"cannot load {path}: {exc}") from exc
        inputs = [(i.name, tuple(i.shape)) for i in session.get_inputs()]
        if len(inputs) != 1 or inputs[0][0] != INPUT_NAME or inputs[0][1][1:] != (N_MELS,
                                                                                  N_FRAMES):
            raise TurnModelError("model_invalid", f"unexpected model inputs {inputs} in {path}")
        logger.info("smart-turn model loaded from %s", path)
        return cls(session, path, options)

    def predict(self, pcm_16k: np.ndarray) -> float | None:
        """P(turn complete) for the turn's audio so far (16 kHz mono, int16 or float32).
        None when there is less than ``min_audio_ms`` of audio. Blocking; thread-safe."""
        samples = to_float32(pcm_16k)
        if samples.size * 1000 < self.options.min_audio_ms * SAMPLE_RATE_HZ:
            return None
        features = log_mel_features(samples)[None, :, :]
        (probs, *_rest) = self._session.run(None, {INPUT_NAME: features})
        return float(np.asarray(probs).reshape(-1)[0])

    async def predict_async(self, pcm_16k: np.ndarray, *,
                            executor: Executor | None = None) -> float | None:
        """``predict`` in a worker thread. Cancelling the awaiting task drops the result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, partial(self.predict, pcm_16k))
