"""The offline answer on 2 cores: candidates' speeds, then first text and first audio per turn.

    APPLIANCE_REAL_MODELS=... python -m bench.local_llm_bench [--turns 6] [--no-candidates]

1. Candidates: every model of bench/llm_shapes.py (random weights, real shape, Q4_K_M made
   by llama.cpp's own quantizer) and the real Gemma 3 270M: load time, prefill tokens/s (256
   tokens in one batch, cold), decode tokens/s (32 tokens sampled as the product samples),
   KV bytes per token (what a per-call snapshot costs).
2. Offline turns through the real Engine (no Gemini key), the real LocalModel and the real
   tool list, for the default's shape (speakable vocabulary) and the real Gemma 3 270M, with
   and without KV reuse ("without": the context is emptied before each turn, so every turn
   prefills its whole prompt, as a cold model would). Per turn: first text (the answer, not
   the filler), first audio (the first piece as the product cuts it (tts/first_clause.py; also without
   its slow-model rule, for comparison), then
   synthesised by the real Piper voice en_US-joe-medium in a thread while the model goes on,
   until its first audio chunk), the prompt's new tokens. Start-up: engine.start() (warm-up
   of the static prompt) and its token count, with the cloud prompt's for comparison.
   Knowledge-base passages come from kb/*.md by keyword overlap (the search itself is
   bench/kb_bench.py's business); the engine keeps two, 300 + 220 characters at most.
3. Two calls interleaved on one model: turn times and the per-call snapshot costs.

Writes bench/results/local_llm.md. The machine may be shared: the report says the load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import LocalLlmSettings, ModelRef
from appliance.conversation.engine import Engine
from appliance.conversation.events import ReplyDone, TextDelta
from appliance.conversation.tools import ToolRegistry
from appliance.llm.failover import ChatModels
from appliance.llm.local import LocalModel, without_amx
from appliance.store.db import Database
from appliance.tts.first_clause import SpokenClauses
from bench import llm_shapes, sections
from tests.support.fakes import make_settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "local_llm.md"
DEFAULT = "qwen2.5-0.5b"
QUESTIONS = ["Hi, do you repair washing machines?", "How long is the warranty on a repair?",
             "Do you deliver to Ramat Gan, and what does it cost?",
             "When are you open on Friday?", "Can I return a kettle I bought last week?",
             "Great, can someone call me back tomorrow morning?", "What brands of fridges do "
             "you sell?", "Thanks, that's all."]


# -- 1. candidates ---------------------------------------------------------------------------

def _open(path: Path, threads: int) -> Any:
    from llama_cpp import Llama

    with without_amx():
        return Llama(model_path=str(path), n_ctx=1024, n_threads=threads,
                     n_threads_batch=threads, n_batch=512, swa_full=True, verbose=False)


def _rates(llm: Any, clock: Any) -> tuple[float, float]:
    """(prefill tokens/s, decode tokens/s) by `clock`: 256 tokens in one batch (best of 2,
    cold), then 32 tokens sampled as the product samples."""
    prompt = [(i * 7919) % 20000 + 300 for i in range(256)]
    prefill = []
    for _ in range(2):
        llm.reset()
        t = clock()
        llm.eval(prompt)
        prefill.append(256 / (clock() - t))
    llm.reset()
    times = []
    for _ in llm.generate(prompt[:64], temp=0.6, top_k=40, top_p=0.9, min_p=0.05,
                          repeat_penalty=1.1):
        times.append(clock())
        if len(times) > 32:
            break
    return max(prefill), 32 / (times[-1] - times[0])


def candidate_speed(path: Path) -> dict[str, float]:
    """One thread timed by its own CPU clock (what the model costs, whatever else runs on
    the machine), then two threads by the wall clock (what it got here, now)."""
    import llama_cpp

    started = time.perf_counter()
    llm = _open(path, 1)
    load_s = time.perf_counter() - started
    cpu_prefill, cpu_decode = _rates(llm, time.thread_time)
    llm.eval([300, 301])
    kv_bytes = llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, 0) / llm.n_tokens
    llm.close()
    llm = _open(path, 2)
    wall_prefill, wall_decode = _rates(llm, time.perf_counter)
    llm.close()
    return {"load_s": load_s, "cpu_prefill": cpu_prefill, "cpu_decode": cpu_decode,
            "wall_prefill": wall_prefill, "wall_decode": wall_decode,
            "kv_kb_per_token": kv_bytes / 1024, "size_mb": path.stat().st_size / 1e6}


def two_core_estimate(c: dict[str, float]) -> tuple[float, float]:
    """(prefill, decode) tokens/s on 2 idle cores from the 1-thread CPU rates: prefill runs on
    2 threads and is compute-bound (x1.8); decode runs on one thread (llama_load.
    decode_threads: the other core is Piper's), x1.0."""
    return c["cpu_prefill"] * 1.8, c["cpu_decode"]


# -- 2. offline turns ------------------------------------------------------------------------

@dataclass
class Hit:
    source: str
    text: str


class KeywordKb:
    """kb/*.md paragraphs, ranked by words in common with the question."""

    def __init__(self, folder: Path) -> None:
        self.paragraphs = [Hit(p.name, block.strip()) for p in sorted(folder.glob("*.md"))
                           for block in p.read_text(encoding="utf-8").split("\n\n")
                           if len(block.strip()) > 40]

    def search(self, text: str, k: int) -> list[Hit]:
        words = {w.strip("?,.!").lower() for w in text.split() if len(w) > 3}
        scored = sorted(self.paragraphs, key=lambda h: -len(words & set(h.text.lower().split())))
        return scored[:k]


@dataclass
class Turn:
    first_text_ms: float
    first_audio_ms: float
    new_tokens: int
    prompt_tokens: int
    clause_chunks: int = 0         # text chunks (~tokens) up to the end of the first clause
    tts_cpu_ms: float = 0.0        # Piper's CPU time to the first audio chunk of it
    first_piece: str = ""          # what Piper spoke first

    def estimate_ms(self, prefill_tps: float, decode_tps: float) -> float:
        """First audio on 2 idle cores: the new prompt tokens, the first clause's tokens,
        Piper's CPU time for its first chunk."""
        return (self.new_tokens / prefill_tps + self.clause_chunks / decode_tps) * 1000 \
            + self.tts_cpu_ms


@dataclass
class Config:
    label: str
    path: Path
    reuse: bool
    slow_first: bool = True        # tts/first_clause.py's slow-model rule, as shipped
    turns: list[Turn] = field(default_factory=list)
    warm_ms: float = 0.0
    static_tokens: int = 0
    cloud_static_tokens: int = 0
    prefill_ms: list[float] = field(default_factory=list)


def load_model(path: Path) -> LocalModel:
    return LocalModel.load(LocalLlmSettings(model=ModelRef("bench", path), context_tokens=4096,
                                            threads=2, max_tokens=48))


async def build_engine(workdir: Path, model: LocalModel) -> tuple[Engine, Database]:
    from appliance.actions.services import ActionServices
    from appliance.actions.tools import register_tools

    settings = make_settings(workdir, api_key="", chat_gguf=model.path,
                             sections={"local_llm": {"max_tokens": 48}})
    db = await Database.open(workdir / f"bench-{time.monotonic_ns()}.db")
    tools = ToolRegistry.default()
    register_tools(tools, ActionServices.build(settings, db))
    engine = Engine(settings, db, ChatModels(gemini=None, local=model), tools,
                    kb=KeywordKb(ROOT / "kb"))
    return engine, db


async def one_turn(conversation: Any, question: str, voice: Any, model: LocalModel,
                   slow_first: bool = True) -> Turn:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    first_text = None
    audio: asyncio.Future[tuple[float, float]] | None = None
    splitter = SpokenClauses() if slow_first else SpokenClauses(slow_after_s=None)
    chunks = 0
    first_piece = ""

    def synthesize(piece: str) -> tuple[float, float]:
        cpu = time.thread_time()
        for _ in voice.synthesize(piece):
            break
        return time.perf_counter(), (time.thread_time() - cpu) * 1000

    async for event in conversation.reply(question, "en"):
        if isinstance(event, TextDelta):
            first_text = first_text or time.perf_counter()
            chunks += audio is None
            pieces = splitter.feed(event.text, time.perf_counter())
            if pieces and audio is None:
                first_piece = pieces[0]
                audio = loop.run_in_executor(None, synthesize, pieces[0])
        elif isinstance(event, ReplyDone) and audio is None:
            rest = splitter.flush()
            first_piece = rest[0] if rest else "Okay."
            audio = loop.run_in_executor(None, synthesize, first_piece)
    audio_at, tts_cpu = await audio if audio is not None else (time.perf_counter(), 0.0)
    stats = model.last_stats
    return Turn(((first_text or audio_at) - started) * 1000, (audio_at - started) * 1000,
                stats.new_tokens if stats else 0, stats.prompt_tokens if stats else 0,
                chunks, tts_cpu, first_piece)


async def run_config(config: Config, model: LocalModel, voice: Any, turns: int,
                     workdir: Path) -> None:
    engine, db = await build_engine(workdir, model)
    try:
        model._llm.reset()
        model.sessions.forget(model.sessions.owner)
        started = time.perf_counter()
        await engine.start()
        config.warm_ms = (time.perf_counter() - started) * 1000
        specs = engine.tools.specs("call")
        config.static_tokens = model.static_tokens(engine.local_prompt, specs)
        config.cloud_static_tokens = model.static_tokens(engine.static_prompt, specs)
        model._llm.set_seed(1234)
        conversation = await engine.open(f"+97250{time.monotonic_ns() % 10**7:07d}", "call")
        loop = asyncio.get_running_loop()
        for question in QUESTIONS[:turns]:
            t = time.perf_counter()
            await engine.idle()      # the caller listens and speaks: the prefill runs now
            config.prefill_ms.append((time.perf_counter() - t) * 1000)
            if not config.reuse:
                await loop.run_in_executor(model._executor, model._llm.reset)
            config.turns.append(await one_turn(conversation, question, voice, model,
                                               config.slow_first))
    finally:
        await engine.close()
        db.close()


async def interleaved(model: LocalModel, voice: Any, workdir: Path) -> dict[str, float]:
    """Two calls taking turns on one model: the snapshot save/restore costs."""
    engine, db = await build_engine(workdir, model)
    try:
        await engine.start()
        before = dict(model.sessions.counters.as_dict())
        a = await engine.open("+972500000001", "call")
        b = await engine.open("+972500000002", "call")
        times = []
        for i in range(2):
            for conversation in (a, b):
                await engine.idle()
                times.append(await one_turn(conversation, QUESTIONS[i], voice, model))
        after = model.sessions.counters.as_dict()
    finally:
        await engine.close()
        db.close()
    saves = after["saves"] - before["saves"]
    restores = after["restores"] - before["restores"]
    return {"saves": saves, "restores": restores,
            "save_ms": (after["save_ms"] - before["save_ms"]) / max(saves, 1),
            "restore_ms": (after["restore_ms"] - before["restore_ms"]) / max(restores, 1),
            "mb_held": after["bytes_held"] / 1e6,
            "first_audio_p50": statistics.median(t.first_audio_ms for t in times[2:]),
            "new_tokens_p50": statistics.median(t.new_tokens for t in times[2:]),
            "prompt_tokens_p50": statistics.median(t.prompt_tokens for t in times[2:])}


# -- report ----------------------------------------------------------------------------------

def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def report(candidates: dict[str, dict[str, float]], configs: list[Config],
           mixed: dict[str, dict[str, float]], load: tuple[float, float, float],
           elapsed_s: float) -> str:
    out = ["# Local model offline (bench/local_llm_bench.py)", "",
           f"{platform.machine()}, {os.cpu_count()} cores, load average before the run "
           f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (a shared machine: other jobs ran "
           f"at the same time, so absolute numbers are noisy); run took {elapsed_s:.0f} s.", ""]
    if candidates:
        out += ["## Candidates (Q4_K_M, random weights of the real shape)", "",
                "Per CPU-second of one thread (robust to the machine being shared), the 2-core "
                "estimate from it (prefill x1.8 on 2 threads, decode x1.0 on one), and what 2 threads got by the "
                "wall clock during this run.", "",
                "| model | file MB | load s | prefill tok/CPU-s | decode tok/CPU-s | 2-core "
                "est. prefill / decode tok/s | 2 threads wall prefill / decode tok/s | KV "
                "KB/token |", "|---|---|---|---|---|---|---|---|"]
        for name, c in candidates.items():
            est = two_core_estimate(c)
            out.append(f"| {name} | {c['size_mb']:.0f} | {c['load_s']:.1f} | "
                       f"{c['cpu_prefill']:.0f} | {c['cpu_decode']:.1f} | {est[0]:.0f} / "
                       f"{est[1]:.0f} | {c['wall_prefill']:.0f} / {c['wall_decode']:.1f} | "
                       f"{c['kv_kb_per_token']:.1f} |")
        out.append("")
    out += ["## Offline turns through the engine (call channel, max 48 answer tokens)", "",
            "First text = the answer's first words (not the filler); first audio = the first "
            "clause synthesised by Piper (joe, real) to its first chunk. Turn 1 included.", "",
            "| model | KV reuse | first piece | warm-up ms (static tokens; cloud prompt) | first text p50 / "
            "p95 ms | first audio p50 / p95 ms | est. first audio on 2 idle cores p50 / p95 "
            "ms | new prompt tokens p50 | prompt tokens p50 | background prefill p50 ms |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for c in configs:
        text = [t.first_text_ms for t in c.turns]
        audio = [t.first_audio_ms for t in c.turns]
        rates = candidates.get(c.label)
        est = "-"
        if rates:
            values = [t.estimate_ms(*two_core_estimate(rates)) for t in c.turns]
            est = f"{statistics.median(values):.0f} / {p(values, .95):.0f}"
        out.append(
            f"| {c.label} | {'yes' if c.reuse else 'no'} | "
            f"{'slow-model rule' if c.slow_first else 'clause or sentence end'} | {c.warm_ms:.0f} ({c.static_tokens}; "
            f"{c.cloud_static_tokens}) | {statistics.median(text):.0f} / {p(text, .95):.0f} | "
            f"{statistics.median(audio):.0f} / {p(audio, .95):.0f} | {est} | "
            f"{statistics.median(t.new_tokens for t in c.turns):.0f} | "
            f"{statistics.median(t.prompt_tokens for t in c.turns):.0f} | "
            f"{statistics.median(c.prefill_ms[1:] or [0]):.0f} |")
    out += ["", "## Two calls taking turns on one model (KV snapshot per call)", "",
            "Turn 2 of each call, after the other call's turn: new / whole prompt tokens.", "",
            "| model | snapshots saved / restored | save ms | restore ms | MB held | first "
            "audio p50 ms | new / prompt tokens p50 |", "|---|---|---|---|---|---|---|"]
    for label, m in mixed.items():
        out.append(f"| {label} | {m['saves']:.0f} / {m['restores']:.0f} | {m['save_ms']:.1f} | "
                   f"{m['restore_ms']:.1f} | {m['mb_held']:.1f} | {m['first_audio_p50']:.0f} | "
                   f"{m['new_tokens_p50']:.0f} / {m['prompt_tokens_p50']:.0f} |")
    return "\n".join(out) + "\n"


async def main_async(turns: int, with_candidates: bool, default: str,
                     build: bool = False) -> str:
    from appliance.tts.piper import Voice
    from bench.realmodels import ensure_or_exit

    load = os.getloadavg()
    started = time.perf_counter()
    models: dict[str, Path] = {f"{default} shape": llm_shapes.ensure(default, speakable=True)}
    models["gemma3-270m (real)"] = ensure_or_exit("gemma3-270m")
    voice_path = ensure_or_exit("piper-joe")
    voice = Voice.load(voice_path, threads=1)
    configs: list[Config] = []
    mixed: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in models.items():
            model = load_model(path)
            try:
                for reuse, slow in ((True, True), (True, False), (False, True)):
                    config = Config(label, path, reuse, slow)
                    await run_config(config, model, voice, turns, Path(tmp))
                    configs.append(config)
                    progress(f"{label}, reuse {reuse}, slow rule {slow}: first audio "
                             f"{[round(t.first_audio_ms) for t in config.turns]} ms; first "
                             f"pieces {[t.first_piece for t in config.turns]}")
                mixed[label] = await interleaved(model, voice, Path(tmp))
            finally:
                model.close()
    candidates: dict[str, dict[str, float]] = {}
    write(report(candidates, configs, mixed, load, time.perf_counter() - started))
    if with_candidates:       # after the turns (written already, in case one fails)
        candidates["gemma3-270m (real)"] = candidate_speed(models["gemma3-270m (real)"])
        for name in llm_shapes.CANDIDATES:
            path = llm_shapes.built(name)
            if path is None and not build:
                progress(f"{name}: not built (python -m bench.llm_shapes {name}); skipped")
                continue
            try:
                candidates[f"{name} shape"] = candidate_speed(path or llm_shapes.ensure(name))
            except (ValueError, RuntimeError) as exc:
                progress(f"{name}: failed: {exc}")
                continue
            progress(f"{name}: {candidates[f'{name} shape']}")
    text = report(candidates, configs, mixed, load, time.perf_counter() - started)
    write(text)
    return text


def write(text: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    RESULTS.write_text(sections.with_notes(text, existing), encoding="utf-8")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--build", action="store_true",
                        help="build the candidates' shapes that are missing (minutes each)")
    parser.add_argument("--no-candidates", action="store_true")
    parser.add_argument("--default", default=DEFAULT, choices=sorted(llm_shapes.CANDIDATES))
    args = parser.parse_args()
    print(asyncio.run(main_async(args.turns, not args.no_candidates, args.default,
                                 args.build)))


if __name__ == "__main__":
    main()
