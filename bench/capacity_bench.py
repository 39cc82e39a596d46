"""How many simultaneous calls one 2-core box holds: ``python -m bench.capacity_bench``.

    APPLIANCE_REAL_MODELS=... python -m bench.capacity_bench [--levels 1 2 3 4 5 6] [--turns 3]

The real server in a process of its own (bench/harness.py's Rig: the shipped config.ini with
the models swapped), real Whisper tiny.en (CTranslate2, int8) and the real Piper voice
en_US-joe-medium (bench/realmodels.py), the Gemini stand-in at 300 ms to first token
(bench/gemini_proc.py), the local model's shape loaded but idle (cloud mode). For N = 1, 2, ...
N calls run at once through `appliance simulate`'s Twilio stand-in (signed webhook, Media
Streams WebSocket, 20 ms mu-law frames at real time, the bot's audio played back at real time),
each with `--turns` caller utterances from shared/audio, started `stagger` apart.

Per N: turn_latency p50 / p95 on the caller's clock (end of the caller's speech -> first bot
frame, which may be the "one moment" filler), the answer's own first frame (not the filler),
underruns, the server's CPU seconds per caller turn and the RSS. An underrun is
measured at the Twilio side: while a reply plays, the next mu-law frame arrives more than
100 ms after the frames received so far have finished playing (harness._dry_gaps: the phone
would play silence); gaps at a piece boundary are counted too (the caller hears them the
same). Memory per call: (peak RSS during the level - RSS before the first call) / N.

Writes bench/results/capacity.md and capacity.json (with --offline MODEL: that model's
section of capacity_offline.md, the other models' sections and the notes kept, and
capacity_offline.json). The machine may be shared with other jobs: the load average is
recorded per level, and the CPU seconds per turn are what the box itself spent, whatever
else ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import shutil
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import harness, llm_shapes, report, sections
from .harness import Rig, Setup, turn
from .models import CACHE, BenchModels, _embedding
from .realmodels import ensure_or_exit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CALL_SET = ["en_hours.wav", "en_price.wav", "en_book.wav", "en_bye.wav", "en_human.wav",
            "en_phone.wav"]
TEMPLATE_DB = ROOT / "bench" / ".cache" / "capacity-kb.db"
# capacity_offline.md: one section per --offline model, keyed by its heading
OFFLINE_HEADINGS = {"gemma3-270m": "Gemma 3 270M (real weights)",
                    "qwen0.5b": "Qwen2.5-0.5B-Instruct shape (the default; random weights)"}
OFFLINE_TITLE = "# Whole offline calls (bench/capacity_bench.py --offline MODEL)"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def real_models(offline: str | None = None) -> BenchModels:
    whisper, voice = ensure_or_exit("whisper-tiny.en"), ensure_or_exit("piper-joe")
    chat = {"qwen0.5b": llm_shapes.ensure("qwen2.5-0.5b", speakable=True)}
    if offline == "gemma3-270m":
        chat["gemma3-270m"] = ensure_or_exit("gemma3-270m")
    return BenchModels(whisper={"tiny": whisper}, chat=chat, embedding=_embedding(CACHE),
                       voice=voice)


KB_SUBSET = ("faq.md", "hours.md")    # indexed at start-up: the whole kb/ takes ~10 min here


def english_config(path: Path, setup: Setup, models: BenchModels, gemini_url: str | None,
                   kb_dir: Path) -> None:
    """harness.write_config, then [stt] languages = en (Whisper tiny.en is English-only) and
    a two-file knowledge base (every turn still searches it; indexing all of kb/ with the
    embedding model's shape would take most of the run on a shared box), and the real
    smart-turn v3.2 end-of-turn model."""
    import configparser

    harness_write(path, setup, models, gemini_url)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    parser["stt"]["languages"] = "en"
    parser["kb"]["directory"] = str(kb_dir)
    # end of turn as the product decides it
    parser["call"]["turn_model"] = str(ensure_or_exit("smart-turn-v3.2"))
    with open(path, "w", encoding="utf-8") as f:
        parser.write(f)


harness_write = harness.write_config


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def level(rig: Rig, n: int, turns: int, base_rss: float) -> dict[str, Any]:
    """n calls at once, started `stagger` apart, the server's RSS sampled meanwhile."""
    stagger = min(1.5, 6.0 / n) if n > 1 else 0.0
    rng = random.Random(n)
    peak = rig.rss_mb()
    done = asyncio.Event()
    load = os.getloadavg()[0]
    cpu0, t0 = cpu_s(rig.start_info["pid"]), time.monotonic()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rig.rss_mb())
            await asyncio.sleep(0.25)

    async def one(i: int) -> list[Any]:
        await asyncio.sleep(i * stagger)
        names = rng.sample(CALL_SET, turns)
        return await rig.call([turn(x) for x in names], f"calls{n}", reply_timeout_s=45)

    sampler = asyncio.create_task(sample())
    results = await asyncio.gather(*(one(i) for i in range(n)))
    done.set()
    await sampler
    measured = [t.as_dict() for r in results for t in r]
    cpu = cpu_s(rig.start_info["pid"]) - cpu0
    return {"calls": n, "turns": measured, "peak_rss_mb": peak, "stagger_s": stagger,
            "rss_per_call_mb": (peak - base_rss) / n, "cpu_s": cpu,
            "cpu_s_per_turn": cpu / max(1, len(measured)), "wall_s": time.monotonic() - t0,
            "load_before": load, "load_after": os.getloadavg()[0]}


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def render(levels: list[dict[str, Any]], info: dict[str, Any]) -> str:
    return "# Simultaneous calls on one box (bench/capacity_bench.py)\n\n" + levels_report(
        levels, info)


def levels_report(levels: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The set-up, the table of levels and what held (capacity.md below its title)."""
    summary = report.concurrency_summary(levels)
    out = [f"{info['cores']} cores; {info['setup']}; {info['turns']} caller turns per call, "
           f"calls started a few seconds apart; server start-up {info['startup_s']} s, RSS "
           f"{info['base_rss_mb']:.0f} MB before the first call. Run {info['date']} UTC, "
           f"{info['minutes']:.1f} min. The box is shared: the load average (1 min) is given "
           f"per level; CPU s per turn is what the server process spent, whatever else ran.", "",
           "| calls | turns | turn_latency p50 / p95 ms | max ms | answer (not the filler) "
           "p50 / p95 ms | turns with a filler first | underruns (longest ms) | "
           "no reply | STT p50 ms | TTS first audio p50 ms | server CPU s per turn | RSS per "
           "call MB | load before / after | holds (p95 <= 1.5 s, 0 underruns) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for lv, row in zip(levels, summary["rows"]):
        lat, answer = row["latency"], row["answer"]
        out.append(
            f"| {row['calls']} | {lat['n']} | {fmt(lat['median'])} / {fmt(lat['p95'])} | "
            f"{fmt(lat['max'])} | {fmt(answer['median'])} / {fmt(answer['p95'])} | "
            f"{row['fillers']} | {row['gaps']} ({fmt(row['longest_gap'])}) | "
            f"{row['missing']} | {fmt(row['stt']['median'])} | {fmt(row['tts']['median'])} | "
            f"{lv['cpu_s_per_turn']:.2f} | {lv['rss_per_call_mb']:.0f} | "
            f"{lv['load_before']:.1f} / {lv['load_after']:.1f} | "
            f"{'yes' if row['ok'] else 'no'} |")
    slope = summary["mb_per_call"]
    out += ["", f"Held (every level up to it): **{summary['held']} calls**. RSS slope over the "
            f"levels: {'-' if slope is None else f'{slope:.0f}'} MB per call.", ""]
    return "\n".join(out) + "\n"


async def main_async(levels: list[int], turns: int, offline: str | None = None) -> str:
    """``offline``: no Gemini at all, the named local model answers (gemma3-270m: the real
    weights; qwen0.5b: the default's shape); the report goes to capacity_offline.md."""
    models = real_models(offline)
    started, date = time.monotonic(), time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    # Random weights (and Gemma 270M, a base model) never end an answer: 48 tokens, as the
    # local-model bench, stands in for an instruct model's one or two spoken sentences.
    setup = (Setup(whisper="tiny", llm="local", chat=offline, max_tokens=48) if offline else
             Setup(whisper="tiny", llm="cloud", chat="qwen0.5b", ttft_s=0.3))
    out: list[dict[str, Any]] = []
    tmp = CACHE.parent / "capacity-run"      # kept after the run: the server's log is there
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    kb_dir = Path(tmp) / "kb"
    kb_dir.mkdir()
    for name in KB_SUBSET:
        (kb_dir / name).write_bytes((ROOT / "kb" / name).read_bytes())

    def write(path: Path, setup: Setup, models: BenchModels, url: str | None) -> None:
        english_config(path, setup, models, url, kb_dir)

    harness.write_config = write
    async with Rig(setup, models, Path(tmp), TEMPLATE_DB) as rig:
        say(f"server up in {rig.start_info['startup_s']} s, load {os.getloadavg()[0]:.1f}")
        await rig.call([turn("en_yes.wav")], "warm-up")
        base = rig.rss_mb()
        info = {"cores": os.cpu_count(), "turns": turns, "date": date,
                "startup_s": rig.start_info["startup_s"], "base_rss_mb": base,
                "setup": "real Whisper tiny.en (int8), real Piper en_US-joe-medium, " + (
                    f"offline: no Gemini, the local model {offline} answers (at most 48 tokens)"
                    if offline else
                    "Gemini stand-in 300 ms to first token")}
        for n in levels:
            out.append(await level(rig, n, turns, base))
            save(out, info, started, offline)
            row = report.concurrency_summary(out)["rows"][-1]
            say(f"{n} calls: p50 {row['latency']['median']} p95 {row['latency']['p95']} "
                f"ms, underruns {row['gaps']}, cpu/turn {out[-1]['cpu_s_per_turn']:.2f} s, "
                f"load {out[-1]['load_before']:.1f}")
    return save(out, info, started, offline)


def save(out: list[dict[str, Any]], info: dict[str, Any], started: float,
         offline: str | None = None) -> str:
    """Write the report so far (after every level: a later one may not finish). Offline, only
    that model's section of capacity_offline.md is rewritten (the other models' and the notes
    stay); otherwise capacity.md, its notes kept."""
    info["minutes"] = (time.monotonic() - started) / 60
    name = "capacity_offline" if offline else "capacity"
    RESULTS.mkdir(parents=True, exist_ok=True)
    md = RESULTS / f"{name}.md"
    existing = md.read_text() if md.exists() else ""
    if offline:
        text = levels_report(out, info)
        md.write_text(sections.merge_section(existing, OFFLINE_HEADINGS[offline], text,
                                             OFFLINE_TITLE))
    else:
        text = render(out, info)
        md.write_text(sections.with_notes(text, existing))
    run = {"info": info, "levels": out}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(offline_runs(path, offline, run) if offline else run, indent=1))
    return text


def offline_runs(path: Path, model: str, run: dict[str, Any]) -> dict[str, Any]:
    """capacity_offline.json: the last run of each --offline model, keyed by model, so a
    rerun of one keeps the other's raw numbers (as the Markdown keeps its section)."""
    runs = json.loads(path.read_text()) if path.exists() else {}
    if "levels" in runs:              # a file from before runs were keyed by model
        runs = {"earlier run": runs}
    return {**runs, model: run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--offline", choices=list(OFFLINE_HEADINGS),
                        help="no Gemini: this local model answers (capacity_offline.md)")
    args = parser.parse_args()
    print(asyncio.run(main_async(args.levels, args.turns, args.offline)))


if __name__ == "__main__":
    main()
