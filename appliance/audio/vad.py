"""Silero VAD v6 (the ONNX file bundled in the faster-whisper wheel), streaming.

``SileroVad`` owns the one ``onnxruntime.InferenceSession`` (load it once at startup with
``SileroVad.load()``; ``run`` is thread-safe, so every call shares it). ``VadStream`` holds one
call's state: the LSTM state (h, c: 1x1x128 each), the 64-sample context carried from the end of
the previous window, and the samples left over that do not yet fill a window.

The model is fed exactly as ``faster_whisper.vad.SileroVADModel`` feeds it: 16 kHz float32,
windows of 512 samples (32 ms), each prefixed by the last 64 samples of the previous window
(zeros for the first), input shape (n_windows, 576); it returns one speech probability per
window and the new (h, c). Feeding windows one call at a time gives bit-identical
probabilities to faster-whisper's batched run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

VAD_RATE_HZ = 16000
WINDOW_SAMPLES = 512
WINDOW_MS = WINDOW_SAMPLES * 1000 // VAD_RATE_HZ  # 32 ms
CONTEXT_SAMPLES = 64
STATE_SHAPE = (1, 1, 128)
MODEL_FILENAME = "silero_vad_v6.onnx"


class VadError(Exception):
    """VAD failure with a short machine code (``model_missing``, ``model_invalid``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def bundled_model_path() -> str:
    """Path of the Silero VAD ONNX inside the installed faster-whisper wheel (not imported)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise VadError("model_missing", "faster-whisper is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "assets", MODEL_FILENAME)


@dataclass(frozen=True)
class VadSessionOptions:
    intra_op_threads: int = 1  # one window is ~0.1 ms of work; threads only add contention
    inter_op_threads: int = 1


class SileroVad:
    """The shared model. Create with ``SileroVad.load()``; make one ``stream()`` per call."""

    def __init__(self, session: object, model_path: str) -> None:
        self._session = session
        self.model_path = model_path

    @classmethod
    def load(
        cls, model_path: str | None = None, options: VadSessionOptions = VadSessionOptions()
    ) -> SileroVad:
        import onnxruntime  # heavy import: only when the model is actually loaded
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        path = model_path or bundled_model_path()
        if not os.path.isfile(path):
            raise VadError("model_missing", f"Silero VAD model not found at {path}")
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = options.intra_op_threads
        opts.inter_op_num_threads = options.inter_op_threads
        opts.enable_cpu_mem_arena = False
        opts.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(
                path, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf) as exc:
            raise VadError("model_invalid", f"cannot load {path}: {exc}") from exc
        names = {i.name for i in session.get_inputs()}
        if names != {"input", "h", "c"}:
            raise VadError("model_invalid", f"unexpected model inputs {sorted(names)} in {path}")
        logger.info("Silero VAD loaded from %s", path)
        return cls(session, path)

    def stream(self) -> VadStream:
        return VadStream(self)

    def infer(
        self, windows: np.ndarray, h: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run (n, 576) float32 context-prefixed windows; return (probs[n], h, c)."""
        probs, h, c = self._session.run(None, {"input": windows, "h": h, "c": c})
        return np.asarray(probs, dtype=np.float32).reshape(-1), h, c


class VadStream:
    """One call's VAD state. Not thread-safe; use from one task/thread at a time."""

    def __init__(self, model: SileroVad) -> None:
        self._model = model
        self.reset()

    def reset(self) -> None:
        """Forget all state (new utterance stream)."""
        self._h = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.windows_done = 0

    def reset_state(self) -> None:
        """Forget the LSTM state only (the audio context and buffered samples stay): after a
        long silence the state left by the last speaker makes the model slow to hear the next
        onset (p ~0.45 instead of ~0.8 for the same word), so the caller's next words start
        afresh, as Silero's own streaming use resets between utterances."""
        self._h = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(STATE_SHAPE, dtype=np.float32)

    @property
    def pending_samples(self) -> int:
        """Samples buffered that do not yet fill a 32 ms window."""
        return len(self._pending)

    def process(self, pcm16_16k: np.ndarray) -> list[float]:
        """Feed 16 kHz mono audio (int16, or float32 in [-1, 1]); return one speech probability
        per completed 32 ms window, in order. Leftover samples wait for the next call."""
        if pcm16_16k.ndim != 1:
            raise ValueError("audio must be mono (1-D)")
        if pcm16_16k.dtype == np.int16:
            samples = pcm16_16k.astype(np.float32) / 32768.0
        elif pcm16_16k.dtype == np.float32:
            samples = pcm16_16k
        else:
            raise TypeError(f"expected int16 or float32 samples, got {pcm16_16k.dtype}")
        audio = np.concatenate([self._pending, samples])
        n_windows = len(audio) // WINDOW_SAMPLES
        used = n_windows * WINDOW_SAMPLES
        self._pending = audio[used:].copy()
        if n_windows == 0:
            return []
        windows = audio[:used].reshape(n_windows, WINDOW_SAMPLES)
        contexts = np.empty((n_windows, CONTEXT_SAMPLES), dtype=np.float32)
        contexts[0] = self._context
        contexts[1:] = windows[:-1, -CONTEXT_SAMPLES:]
        self._context = windows[-1, -CONTEXT_SAMPLES:].copy()
        batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1))
        probs, self._h, self._c = self._model.infer(batch, self._h, self._c)
        self.windows_done += n_windows
        return [float(p) for p in probs]
