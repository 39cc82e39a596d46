"""Run the appliance under test and call it as Twilio would; collect per-turn measurements.

`Rig` starts the Gemini stand-in (bench/gemini_proc.py) and the appliance (bench/child.py) as
processes of their own, with the shipped config.ini in which only the model paths, the port, the
database and the public URL are replaced. `Rig.call()` runs one call with the Twilio stand-in of
`appliance simulate` (appliance/simulate.py, with Twilio's media clock; the caller waits for
the reply to its last turn to be stored before it speaks again) in this process, then joins
three views of each
caller turn: the caller's (what the stand-in received, on its clock), the server's stored row
(`call_turns`) and the server's per-piece record (bench/child.py).
"""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.simulate import CallerTurn, SimResult, simulate_call

from .models import BenchModels

ROOT = Path(__file__).resolve().parents[1]
# The caller utterances: shared/audio beside the checkout, else the copy in tests/data/audio.
AUDIO_DIR = next((d for d in (ROOT.parent / "shared" / "audio", ROOT / "tests" / "data" / "audio")
                  if (d / "manifest.json").is_file()), ROOT / "tests" / "data" / "audio")
MANIFEST = {e["file"]: e for e in json.loads((AUDIO_DIR / "manifest.json").read_text())}
TOKEN = "bench-auth-token-0123456789abcdef"
PUBLIC_URL = "https://receptionist.example.com"
DRY_GAP_S = 0.100          # an underrun of the caller's playback longer than this is audible
STAGES = ("endpoint_wait_ms", "stt_ms", "llm_ttft_ms", "first_clause_ms",
          "tts_first_audio_ms", "overhead_ms")


@dataclass(frozen=True)
class Setup:
    """One configuration of the appliance under test."""

    whisper: str = "base"             # tiny | base
    llm: str = "cloud"                # cloud (Gemini stand-in) | local (llama.cpp only)
    chat: str = "qwen1.5b"            # the local model's shape
    ttft_s: float = 0.3               # Gemini stand-in: time to first token
    tokens_per_s: float = 200.0       # ... and its pace afterwards
    long_replies: bool = False        # Gemini stand-in always answers a ~20 s reply
    instant: str | None = None        # None | "all" | "stt_tts" (bench/instant.py)
    max_tokens: int | None = None     # [local_llm] max_tokens (None: the shipped value)
    local_prefill: bool | None = None  # force the engine's background local prefill on/off

    def label(self) -> str:
        if self.instant == "all":
            return "instant engines"
        brain = (f"cloud, first token {int(self.ttft_s * 1000)} ms" if self.llm == "cloud"
                 else f"local {self.chat}")
        return (f"{brain}, whisper {self.whisper}"
                + ("" if self.local_prefill is None else
                   f", background local prefill {'on' if self.local_prefill else 'off'}"))


def turn(name: str, barge_in_after_s: float | None = None) -> CallerTurn:
    return CallerTurn(AUDIO_DIR / name, speech_end_s=MANIFEST[name]["speech_end_s"],
                      barge_in_after_s=barge_in_after_s)


def write_config(path: Path, setup: Setup, models: BenchModels, gemini_url: str | None) -> None:
    """The shipped config.ini with the benchmark's models, port, database and URL."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "config.ini", encoding="utf-8")
    values = {
        ("server", "port"): "0",
        ("server", "public_url"): PUBLIC_URL,
        ("server", "secrets_file"): str(path.parent / "no-secrets.env"),
        ("server", "log_level"): os.environ.get("BENCH_LOG_LEVEL", "warning"),
        ("storage", "database"): str(path.parent / "appliance.db"),
        ("twilio", "operator_number"): "+15550009999",
        ("stt", "model"): str(models.whisper[setup.whisper]),
        ("tts", "voice"): str(models.voice),
        ("local_llm", "model_path"): str(models.chat[setup.chat]),
        ("kb", "embedding_model"): str(models.embedding),
        ("kb", "directory"): str(ROOT / "kb"),
        ("call", "silence_prompt_s"): "60",
        ("call", "max_concurrent"): "64",      # the sweep measures beyond the admission limit
        ("call", "caller_max_calls"): "1000",
        ("gemini", "base_url"): gemini_url or "",
    }
    if setup.max_tokens is not None:
        values[("local_llm", "max_tokens")] = str(setup.max_tokens)
    for (section, key), value in values.items():
        parser[section][key] = value
    with open(path, "w", encoding="utf-8") as f:
        parser.write(f)


class _Proc:
    """A child process that prints one JSON line when ready and stops when stdin closes."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.args, self.log_path, self.env = args, log_path, env
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}

    async def start(self, timeout_s: float) -> dict[str, Any]:
        self._log = self.log_path.open("ab")  # noqa: ASYNC230 - once, before the child starts
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *self.args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=self._log, env=self.env, cwd=str(ROOT))
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        except TimeoutError:
            await self.stop()
            raise RuntimeError(f"{self.args} not ready in {timeout_s} s; see {self.log_path}"
                               ) from None
        if not line:
            await self.stop()
            raise RuntimeError(f"{self.args} exited; see {self.log_path}")
        self.info = json.loads(line)
        return self.info

    async def send(self, line: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Send one command line; return the JSON line it answers."""
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        return json.loads(await asyncio.wait_for(self.proc.stdout.readline(), timeout_s))

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._log.close()
        self.proc = None


@dataclass
class TurnMeasure:
    """One caller turn, as the caller and as the server saw it."""

    scenario: str
    wav: str
    call_sid: str
    caller_turn_ms: float | None            # turn_latency on the caller's clock
    caller_heard_ms: float | None           # heard_latency on the caller's clock
    row: dict[str, Any] = field(default_factory=dict)    # call_turns (stored)
    answer_ms: float | None = None          # server: first frame of the answer (not a filler)
    filler: bool = False                    # a "one moment" went out first
    eos_lag_ms: float | None = None         # server's end of speech - the caller's
    dry_gaps: list[tuple[float, bool]] = field(default_factory=list)  # (ms, at a piece edge)
    clear_ms: float | None = None           # caller: speech onset over the bot -> clear
    server_clear_ms: float | None = None    # server: VAD onset -> clear sent
    early_turns: int = 0                    # turns the server ended inside this utterance

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Rig:
    """`async with Rig(setup, models, workdir) as rig: await rig.call([...])`."""

    def __init__(self, setup: Setup, models: BenchModels, workdir: Path,
                 template_db: Path | None = None) -> None:
        self.setup, self.models = setup, models
        self.dir = Path(tempfile.mkdtemp(prefix="rig-", dir=workdir))
        # The knowledge base indexed once (kb/ with the benchmark's embedding model): later rigs
        # start from a copy and the appliance skips the unchanged files, as after a restart.
        self.template_db = template_db
        self.record = self.dir / "calls.jsonl"
        self.gemini: _Proc | None = None
        self.app: _Proc | None = None
        self.start_info: dict[str, Any] = {}
        self._stored_cache: dict[str, tuple[float, int]] = {}

    async def __aenter__(self) -> Rig:
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT),
                   TWILIO_AUTH_TOKEN=TOKEN)
        env.pop("GEMINI_API_KEY", None)
        gemini_url = None
        if self.setup.llm == "cloud" or self.setup.instant == "stt_tts":
            args = ["-m", "bench.gemini_proc", "--ttft", str(self.setup.ttft_s),
                    "--rate", str(self.setup.tokens_per_s)]
            if self.setup.long_replies:
                args.append("--long")
            self.gemini = _Proc(args, self.dir / "gemini.log", env)
            gemini_url = (await self.gemini.start(30))["url"]
            env["GEMINI_API_KEY"] = "bench-key"
        config = self.dir / "config.ini"
        write_config(config, self.setup, self.models, gemini_url)
        if self.template_db is not None and self.template_db.is_file():
            _backup(self.template_db, self.dir / "appliance.db")
        args = ["-m", "bench.child", str(config), str(self.record)]
        if self.setup.instant:
            args += ["--instant", self.setup.instant]
        if self.setup.local_prefill is not None:
            args += ["--local-prefill", "on" if self.setup.local_prefill else "off"]
        self.app = _Proc(args, self.dir / "appliance.log", env)
        started = time.monotonic()
        self.start_info = await self.app.start(600)
        self.start_info["startup_s"] = round(time.monotonic() - started, 1)
        if not self.start_info.get("ready"):
            await self.__aexit__()
            raise RuntimeError(f"appliance not ready: {self.start_info}")
        if self.template_db is not None and not self.template_db.is_file():
            _backup(self.dir / "appliance.db", self.template_db)
        return self

    def _reply_stored(self, call_sid: str, turns_spoken: int) -> bool:
        """Has the reply to the caller's last turn been stored (i.e. played to the end)?"""
        if turns_spoken == 0:
            return True
        now = time.monotonic()
        cached = self._stored_cache.get(call_sid)
        if cached and cached[1] >= turns_spoken:
            return True
        if cached and now - cached[0] < 0.1:
            return False
        conn = sqlite3.connect(self.dir / "appliance.db", timeout=1)
        try:
            (count,) = conn.execute("SELECT COUNT(*) FROM call_turns t JOIN calls c ON "
                                    "c.id = t.call_id WHERE c.call_sid = ?", (call_sid,)
                                    ).fetchone()
        except sqlite3.Error:
            count = 0
        finally:
            conn.close()
        self._stored_cache[call_sid] = (now, count)
        return count >= turns_spoken

    async def gemini_set(self, **values: float) -> None:
        """Change the Gemini stand-in between calls: ttft=0.8, rate=150, long=1."""
        for key, value in values.items():
            await self.gemini.send(f"{key} {value}")

    async def __aexit__(self, *exc: object) -> None:
        for proc in (self.app, self.gemini):
            if proc is not None:
                await proc.stop()

    @property
    def url(self) -> str:
        return self.start_info["url"]

    def local_rounds(self) -> list[dict[str, Any]]:
        """The local model's rounds so far: prompt tokens, of which cached, first token ms."""
        import re

        rounds = []
        if self.record.is_file():
            for line in self.record.read_text().splitlines():
                data = json.loads(line)
                m = re.search(r"(\d+) prompt tokens \((\d+) cached\), first token (\d+) ms",
                              data.get("local_round", ""))
                if m:
                    rounds.append({"prompt_tokens": int(m[1]), "cached_tokens": int(m[2]),
                                   "ttft_ms": float(m[3]), "at": data["at"]})
        return rounds

    def rss_mb(self) -> float:
        with open(f"/proc/{self.start_info['pid']}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    async def call(self, turns: list[CallerTurn], scenario: str,
                   reply_timeout_s: float = 30.0) -> list[TurnMeasure]:
        result = await simulate_call(self.url, PUBLIC_URL, TOKEN, turns,
                                     reply_timeout_s=reply_timeout_s,
                                     reply_done=self._reply_stored)
        record = await self._record(result.call_sid)
        return measure(result, turns, self._rows(result.call_sid), record, scenario)

    async def _record(self, call_sid: str, timeout_s: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.record.is_file():
                for line in self.record.read_text().splitlines():
                    data = json.loads(line)
                    if data.get("call_sid") == call_sid:
                        return data
            await asyncio.sleep(0.1)
        return {"call_sid": call_sid, "barge_ins": [], "replies": []}

    def _rows(self, call_sid: str) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.dir / "appliance.db")
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute(
                "SELECT t.* FROM call_turns t JOIN calls c ON c.id = t.call_id "
                "WHERE c.call_sid = ? ORDER BY t.turn_index", (call_sid,)).fetchall()
        finally:
            conn.close()
        return [dict(r) for r in rows]


def _backup(source: Path, target: Path) -> None:
    """Copy a live SQLite database (WAL included) with SQLite's backup API."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _turn_start(turn: CallerTurn, end_of_speech_at: float) -> float:
    return end_of_speech_at - MANIFEST[turn.wav.name]["speech_end_s"]


def measure(result: SimResult, turns: list[CallerTurn], rows: list[dict[str, Any]],
            record: dict[str, Any], scenario: str) -> list[TurnMeasure]:
    """Join the caller's view, the stored rows and the server's record, turn by turn."""
    replies = sorted(record.get("replies", []), key=lambda r: r["reply_id"])
    if len(rows) == len(replies):
        for row, reply in zip(rows, replies):
            reply["stored"] = row
    spoken = [(t, r) for t, r in zip(turns, result.turns) if not t.dtmf]
    starts = [_turn_start(t, r.end_of_speech_at) for t, r in spoken]
    out = []
    for i, (t, r) in enumerate(spoken):
        window_end = starts[i + 1] if i + 1 < len(spoken) else float("inf")
        mine = [p for p in replies
                if starts[i] <= (p["end_of_speech_at"] or 0) < window_end]
        m = TurnMeasure(scenario, t.wav.name, result.call_sid, r.turn_latency_ms,
                        r.heard_latency_ms, early_turns=max(0, len(mine) - 1))
        if mine:
            reply = mine[-1]
            m.row = reply.get("stored") or dict(reply["row"], model=reply["model"])
            eos = reply["end_of_speech_at"]
            m.eos_lag_ms = round((eos - r.end_of_speech_at) * 1000, 1)
            pieces = [p for p in reply["pieces"] if p["first_sent_at"] is not None]
            m.filler = bool(pieces) and pieces[0]["filler"]
            answer = next((p for p in pieces if not p["filler"]), None)
            if answer is not None:
                m.answer_ms = round((answer["first_sent_at"] - eos) * 1000, 1)
        if r.first_reply_frame_at is not None:
            m.dry_gaps = _dry_gaps(result.events, r.first_reply_frame_at, window_end)
        if t.barge_in_after_s is not None:
            onset = starts[i] + MANIFEST[t.wav.name]["speech_start_s"]
            if r.clear_at is not None:
                m.clear_ms = round((r.clear_at - onset) * 1000, 1)
            server = [b for b in record.get("barge_ins", [])
                      if starts[i] <= b["clear_at"] < window_end]
            if server:
                m.server_clear_ms = round((server[0]["clear_at"] - server[0]["onset_at"]) * 1000,
                                          1)
        out.append(m)
    return out


def _dry_gaps(events: list[dict[str, Any]], start: float, end: float
              ) -> list[tuple[float, bool]]:
    """Underruns of the caller's playback during one reply: (length ms, after a mark?).

    The caller stand-in plays frames at real time as they arrive; the buffer runs dry when a
    frame arrives after the previous one has finished playing.
    """
    gaps: list[tuple[float, bool]] = []
    play_end: float | None = None
    mark_since = False
    for e in events:
        at = e["_at"]
        if at < start or at >= end:
            continue
        if e["event"] == "mark":
            mark_since = True
        elif e["event"] == "clear":
            break
        elif e["event"] == "media":
            if play_end is not None and at - play_end > DRY_GAP_S:
                gaps.append((round((at - play_end) * 1000, 1), mark_since))
            play_end = max(at, play_end or at) + 0.020
            mark_since = False
    return gaps
