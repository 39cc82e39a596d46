"""The systems the turn-taking benchmark calls, each a process of its own on loopback.

- `GeminiStandIn`: bench/gemini_proc.py (first token after --ttft, then ~200 tokens/s).
- `Appliance`: `python -m appliance serve --config X`, the product's own entry point, with the
  shipped config.ini in which only the models (real Whisper tiny.en, real Piper joe, a tiny
  random local model and embedding model that a cloud turn never uses), [stt] languages = en,
  the port, the database and the Gemini URL differ.
- `Pipecat`: bench/pipecat_bench/bot.py in its own venv (bench/pipecat_bench/venv.py).

Each is ready when GET /healthz answers 200, and is stopped with SIGTERM (SIGKILL after 20 s).
"""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import socket
import sys
import time
from pathlib import Path

import aiohttp

from . import realmodels

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://bench.example"
AUTH_TOKEN = "turn-bench-auth-token"
GREETING = "Hello, you've reached Sunrise Appliances. How can I help you today?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Process:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.argv, self.log_path, self.env = name, argv, log, env
        self.proc: asyncio.subprocess.Process | None = None

    async def spawn(self, stdout_pipe: bool = False) -> asyncio.subprocess.Process:
        self._log = open(self.log_path, "ab")  # noqa: ASYNC230 - a log file held for the process
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else self._log, stderr=self._log,
            env=self.env, cwd=str(ROOT))
        return self.proc

    async def wait_healthy(self, url: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); "
                                       f"see {self.log_path}")
                try:
                    async with http.get(url + "/healthz") as resp:
                        body = await resp.text()
                        if resp.status == 200:
                            return json.loads(body) if body.startswith("{") else {}
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)
        raise RuntimeError(f"{self.name} not healthy in {timeout_s:.0f} s; see {self.log_path}")

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._log.close()
        self.proc = None


class GeminiStandIn:
    def __init__(self, workdir: Path, ttft_s: float = 0.3) -> None:
        argv = [sys.executable, "-m", "bench.gemini_proc", "--ttft", str(ttft_s)]
        self._proc = _Process("gemini stand-in", argv, workdir / "gemini.log", dict(os.environ))
        self.url = ""

    async def __aenter__(self) -> GeminiStandIn:
        proc = await self._proc.spawn(stdout_pipe=True)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"Gemini stand-in exited; see {self._proc.log_path}")
        self.url = json.loads(line)["url"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._proc.stop()

    async def requests(self) -> int:
        """Turn requests (not probes) the stand-in has answered so far."""
        return int((await self._command("stats"))["requests"])

    async def say(self, text: str) -> None:
        """Every request from now on is answered with ``text`` ("" for the usual replies)."""
        await self._command(f"say {' '.join(text.split())}")

    async def _command(self, line: str) -> dict[str, object]:
        proc = self._proc.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line.encode() + b"\n")
        await proc.stdin.drain()
        return json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))


def write_appliance_config(path: Path, port: int, gemini_url: str,
                           overrides: dict[tuple[str, str], str] | None = None) -> None:
    """The shipped config.ini with the benchmark's models, port, database and Gemini URL, and
    `overrides` ((section, key) -> value: a variant measured against the shipped one)."""
    from tests.support import models as tm

    models = ROOT / "bench" / ".cache" / "turnbench-models"
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "config.ini", encoding="utf-8")
    values = {
        ("server", "port"): str(port),
        ("server", "public_url"): PUBLIC_URL,
        ("server", "secrets_file"): str(path.parent / "no-secrets.env"),
        ("server", "log_level"): os.environ.get("BENCH_LOG_LEVEL", "warning"),
        ("storage", "database"): str(path.parent / "appliance.db"),
        ("twilio", "operator_number"): "+15550009999",
        ("stt", "model"): str(realmodels.ensure("whisper-tiny.en")),
        ("stt", "languages"): "en",
        ("tts", "voice"): str(realmodels.ensure("piper-joe")),
        ("call", "turn_model"): str(realmodels.ensure("smart-turn-v3.2")),
        # one stand-in caller number makes every call: the per-caller rate limit (6 per
        # window) refused the barge-in calls of an appliance-only run
        ("call", "caller_max_calls"): "1000",
        ("local_llm", "model_path"): str(tm.make_chat_gguf(models)),
        ("kb", "embedding_model"): str(tm.make_embedding_gguf(models)),
        ("kb", "directory"): str(ROOT / "kb"),
        ("call", "silence_prompt_s"): "60",
        ("gemini", "base_url"): gemini_url,
        ("business", "greeting"): GREETING,
    }
    for (section, key), value in {**values, **(overrides or {})}.items():
        parser[section][key] = value
    with open(path, "w", encoding="utf-8") as f:
        parser.write(f)


class _System:
    """A system under test: a server process on a free loopback port, ready when healthy."""

    label = ""
    sign = True                 # sign webhooks and the WS upgrade as Twilio does

    def __init__(self, workdir: Path, gemini_url: str) -> None:
        self.workdir, self.gemini_url = workdir, gemini_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_s = 0.0
        self._proc: _Process | None = None

    async def _command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    async def __aenter__(self) -> _System:
        argv, env = await self._command()
        self._proc = _Process(self.label, argv, self.workdir / f"{self.label}.log", env)
        started = time.monotonic()
        await self._proc.spawn()
        await self._proc.wait_healthy(self.url, 300)
        self.startup_s = time.monotonic() - started
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None:
            await self._proc.stop()


class Appliance(_System):
    label = "appliance"

    def __init__(self, workdir: Path, gemini_url: str,
                 overrides: dict[tuple[str, str], str] | None = None) -> None:
        super().__init__(workdir, gemini_url)
        self.overrides = dict(overrides or {})

    def speculation(self) -> dict[str, int]:
        """What its own call records say the speculative replies cost (call_turns)."""
        import sqlite3

        with sqlite3.connect(self.workdir / "appliance.db") as db:
            row = db.execute("SELECT COUNT(*), SUM(speculative_starts), "
                             "SUM(speculative_cancelled), SUM(speculative_released) "
                             "FROM call_turns").fetchone()
        return {"turns": row[0], "speculative_starts": row[1] or 0,
                "speculative_cancelled": row[2] or 0, "speculative_released": row[3] or 0}

    async def _command(self) -> tuple[list[str], dict[str, str]]:
        config = self.workdir / "appliance.ini"
        for stale in self.workdir.glob("appliance.db*"):
            stale.unlink()
        await asyncio.to_thread(write_appliance_config, config, self.port, self.gemini_url,
                                self.overrides)
        env = dict(os.environ, TWILIO_AUTH_TOKEN=AUTH_TOKEN, GEMINI_API_KEY="bench-key",
                   OMP_WAIT_POLICY="PASSIVE")
        return [sys.executable, "-m", "appliance", "serve", "--config", str(config)], env


class Pipecat(_System):
    label = "pipecat"
    sign = False                # pipecat's template does not check Twilio signatures

    async def _command(self) -> tuple[list[str], dict[str, str]]:
        from .pipecat_bench.venv import ensure_venv

        python = await asyncio.to_thread(ensure_venv)
        argv = [str(python), str(ROOT / "bench" / "pipecat_bench" / "bot.py"),
                "--port", str(self.port), "--public-url", PUBLIC_URL,
                "--gemini-url", self.gemini_url, "--greeting", GREETING,
                "--whisper", str(realmodels.ensure("whisper-tiny.en")),
                "--voice", str(realmodels.ensure("piper-joe"))]
        return argv, dict(os.environ, GOOGLE_API_KEY="bench-key", OMP_WAIT_POLICY="PASSIVE")
