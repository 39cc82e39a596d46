"""pipecat's own venv (bench/.cache/pipecat-venv), created on first use: pipecat pins versions
of numpy, onnxruntime and friends that must not leak into the product's venv."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "bench" / ".cache" / "pipecat-venv"
# uvicorn serves the template's FastAPI app; pipecat lists it only under its [runner] extra
REQUIREMENTS = ("pipecat-ai[silero,whisper,google,websocket,piper]==1.14.0", "uvicorn")
BASE_PYTHON = "/usr/bin/python3"


def ensure_venv() -> Path:
    """The venv's python, with pipecat installed (a few minutes the first time)."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c",
             "import pipecat, faster_whisper, piper, google.genai, fastapi, uvicorn"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    if not python.exists():
        subprocess.run([BASE_PYTHON, "-m", "venv", str(VENV)], check=True)
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS],
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(REQUIREMENTS)} failed: "
                           f"{result.stderr.strip()[-600:]}")
    return python


if __name__ == "__main__":
    print(ensure_venv())
