r"""Turn-taking on real speech: the appliance and pipecat, called the same way, side by side.

    APPLIANCE_REAL_MODELS=/work/main/tests/.cache/real-models \
        python -m bench.turn_bench [--systems appliance,pipecat] [--per-call 8] [--limit N]
                                   [--bargeins 8] [--bargeins-only]

On a quiet box (check `uptime` first: the report records the load average after every call).
The pipecat venv (bench/pipecat_bench/venv.py) is made on first use from PyPI; `--systems
appliance` runs the appliance alone.

Plays the real-speech turn set (bench/speech_set.py; built on first use) to each system over the
Media Streams protocol with the product's Twilio stand-in (appliance.simulate: signed
webhook, WebSocket, real-time 20 ms mu-law frames, the bot's audio played back at real time,
marks echoed, `clear` honoured), several turns per call in a fixed shuffled order. Both systems
use real Whisper tiny.en, the real Piper joe voice and the same Gemini stand-in (first token after
300 ms). The stand-in answers each caller turn with the question the set's next turn replies to
(its bot_question: "What's the best number to reach you on?" before a number is read out), as the
bot would on a real call; each system makes of that what it can. Everything is measured on the Twilio side (bench/turn_metrics.py), so both are measured
alike. Then `--bargeins` barge-ins: the caller asks something and, 0.8 s after the bot's answer
starts, speaks a longer turn over it; measured: caller speech onset -> the bot's `clear`. A
question the bot never answered (its reply timeout ran out, the "barge-in" was spoken into
silence) is counted apart as unanswered, not as a missed `clear`; `--bargeins-only` plays only
these calls (~3 min for the appliance).
The cost: Gemini requests the stand-in answered per turn that got a reply, and (appliance, from
its call_turns) the speculative replies started, cancelled and released.

Writes bench/results/turn_taking.md (both systems side by side with the ratio, cut-offs, turn
latency p50/p95, barge-in clear p50/p95, Gemini requests per confirmed turn, cancelled count,
load average) and turn_taking.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Protocol

from appliance.simulate import CallerTurn, TurnResult, simulate_call

from . import speech_set
from .turn_metrics import (BURST_GAP_S, TurnMetrics, bargein_clear_ms, summarize,
                           summarize_bargeins, turn_metrics)
from .turn_report import write_report
from .turn_systems import AUTH_TOKEN, PUBLIC_URL, Appliance, GeminiStandIn, Pipecat

ROOT = Path(__file__).resolve().parent.parent
WORKDIR = ROOT / "bench" / ".cache" / "turn-bench"
RESULTS = ROOT / "bench" / "results"


def plan_calls(manifest: list[dict[str, Any]], per_call: int, seed: int,
               limit: int | None) -> list[list[dict[str, Any]]]:
    """The turns in a fixed shuffled order (kinds mixed within a call), `per_call` per call."""
    entries = list(manifest)
    random.Random(seed).shuffle(entries)
    if limit:
        entries = entries[:limit]
    return [entries[i:i + per_call] for i in range(0, len(entries), per_call)]


BARGE_IN_AFTER_S = 0.8
BARGE_KINDS = ("complaint", "statement", "question", "two_part")


def plan_bargeins(manifest: list[dict[str, Any]], count: int, seed: int,
                  per_call: int = 4) -> list[list[tuple[dict[str, Any], dict[str, Any]]]]:
    """`count` (question, barge-in) pairs, `per_call` to a call: the question gets an answer,
    the barge-in is a turn of 1.5 s or more spoken over that answer."""
    rng = random.Random(seed + 1)
    asks = [e for e in manifest if e["kind"] == "question"]
    barges = [e for e in manifest if e["kind"] in BARGE_KINDS
              and e["speech_end_s"] - e["speech_start_s"] >= 1.5]
    rng.shuffle(barges)
    pairs = [(asks[i % len(asks)], barges[i % len(barges)]) for i in range(count)]
    return [pairs[i:i + per_call] for i in range(0, len(pairs), per_call)]


class CallTarget(Protocol):
    """Where a call goes: a system under test (turn_systems) or a test's running server."""

    @property
    def url(self) -> str: ...
    @property
    def sign(self) -> bool: ...


async def run_bargein_call(system: CallTarget,
                           pairs: list[tuple[dict[str, Any], dict[str, Any]]],
                           audio_dir: Path, public_url: str = PUBLIC_URL,
                           auth_token: str = AUTH_TOKEN) -> list[float | None | str]:
    """One call of (question, barge-in) pairs; per barge-in its clear latency (ms), None if no
    clear came, or UNANSWERED if the bot never started answering the question: the caller's
    timeout ran out and the "barge-in" was spoken into silence, so there was nothing to stop."""
    turns = []
    for ask, barge in pairs:
        turns.append(CallerTurn(audio_dir / ask["file"], speech_end_s=ask["speech_end_s"]))
        turns.append(CallerTurn(audio_dir / barge["file"], speech_end_s=barge["speech_end_s"],
                                barge_in_after_s=BARGE_IN_AFTER_S))
    result = await simulate_call(system.url, public_url, auth_token, turns,
                                 greeting_timeout_s=25.0, reply_timeout_s=12.0,
                                 sign=system.sign, tail_s=1.0)
    return bargein_outcomes(result.turns, pairs)


UNANSWERED = "unanswered"


def bargein_outcomes(played: list[TurnResult],
                     pairs: list[tuple[dict[str, Any], dict[str, Any]]]
                     ) -> list[float | None | str]:
    """Each played barge-in's clear latency (ms), None (no clear), or UNANSWERED (no answer to
    the question came before the barge-in started: not a barge-in at all)."""
    outcomes: list[float | None | str] = []
    for index, (_, barge) in enumerate(pairs):
        if 2 * index + 1 >= len(played):
            break
        ask, turn = played[2 * index], played[2 * index + 1]
        if ask.first_reply_frame_at is None:
            outcomes.append(UNANSWERED)
            continue
        start = turn.end_of_speech_at - barge["speech_end_s"]
        outcomes.append(bargein_clear_ms(barge, start, turn.clear_at))
    return outcomes


def bursts(events: list[dict[str, Any]], origin: float) -> list[list[float]]:
    """[first, last] arrival of each run of bot media frames, seconds from `origin`."""
    runs: list[list[float]] = []
    for event in events:
        if event.get("event") != "media":
            continue
        at = round(event["_at"] - origin, 2)
        if runs and at - runs[-1][1] <= BURST_GAP_S:
            runs[-1][1] = at
        else:
            runs.append([at, at])
    return runs


CLOSING_QUESTION = "Thank you. Is there anything else I can help with?"


def bot_lines(entries: list[dict[str, Any]]) -> list[str]:
    """What the bot answers to each caller turn: the question the next turn replies to (the set's
    bot_question), so a caller reads out a number after being asked for it, as on a real call."""
    following = [e.get("bot_question") for e in entries[1:]] + [None]
    return [f"I see. {q}" if q else CLOSING_QUESTION for q in following]


async def run_call(system: Appliance | Pipecat, entries: list[dict[str, Any]],
                   audio_dir: Path, gemini: GeminiStandIn | None = None,
                   ) -> tuple[list[TurnMetrics], dict[str, Any]]:
    def before(line: str) -> Callable[[], Awaitable[None]] | None:
        return None if gemini is None else (lambda: gemini.say(line))

    turns = [CallerTurn(audio_dir / e["file"], speech_end_s=e["speech_end_s"],
                        before=before(line)) for e, line in zip(entries, bot_lines(entries))]
    result = await simulate_call(system.url, PUBLIC_URL, AUTH_TOKEN, turns,
                                 greeting_timeout_s=25.0, reply_timeout_s=12.0,
                                 sign=system.sign, tail_s=1.0)
    starts = [t.end_of_speech_at - e["speech_end_s"] for t, e in zip(result.turns, entries)]
    metrics = []
    for index, (entry, start) in enumerate(zip(entries, starts)):
        window_end = starts[index + 1] if index + 1 < len(starts) else float("inf")
        metrics.append(turn_metrics(entry, result.events, start, window_end))
    origin = starts[0] if starts else 0.0
    info = {"call_sid": result.call_sid, "turns_played": len(result.turns),
            "closed_by_server": result.closed_by_server,
            "greeting_frames": sum(1 for e in result.events if e.get("event") == "media"
                                   and e["_at"] < origin),
            # the call's timeline, seconds from the first turn's first frame, for reading
            "turn_starts_s": [round(s - origin, 2) for s in starts],
            "bot_bursts_s": bursts(result.events, origin),
            "clears_s": [round(e["_at"] - origin, 2) for e in result.events
                         if e.get("event") == "clear"]}
    return metrics, info


class _Tally:
    """One system's turns and calls as the run goes."""

    def __init__(self) -> None:
        self.turns: list[TurnMetrics] = []
        self.calls: list[dict[str, Any]] = []
        self.busy_s = 0.0
        self.startup_s = 0.0
        self.requests = 0                      # Gemini requests during the set's calls
        self.clears: list[float | None | str] = []   # barge-in clear latencies (or UNANSWERED)
        self.speculation: dict[str, int] = {}

    def result(self) -> dict[str, Any]:
        summary = summarize(self.turns)
        replied = summary["replied"]
        summary.update(summarize_bargeins(self.clears))
        summary["gemini_requests"] = self.requests
        summary["gemini_per_confirmed_turn"] = (round(self.requests / replied, 2)
                                                if replied else None)
        summary["speculative_cancelled"] = self.speculation.get("speculative_cancelled")
        return {"summary": summary, "turns": [t.as_dict() for t in self.turns],
                "calls": self.calls, "startup_s": round(self.startup_s, 1),
                "wall_s": round(self.busy_s, 1), "bargein_clears_ms": self.clears,
                "speculation": self.speculation}


async def _start(name: str, gemini_url: str, stack: AsyncExitStack, results: dict[str, Any],
                 overrides: dict[tuple[str, str], str]) -> Appliance | Pipecat | None:
    workdir = WORKDIR / name
    workdir.mkdir(parents=True, exist_ok=True)
    system = Appliance(workdir, gemini_url, overrides) if name == "appliance" else \
        Pipecat(workdir, gemini_url)
    try:
        return await stack.enter_async_context(system)
    except Exception as exc:  # noqa: BLE001 - one system failing must not lose the other's numbers
        results["systems"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  {name} did not start: {exc}", flush=True)
        return None


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Both systems run at once, idle but for the call in progress; their calls alternate, so
    the other work on the machine weighs on both alike."""
    manifest = speech_set.load()
    calls = [] if args.bargeins_only else plan_calls(manifest, args.per_call, args.seed,
                                                     args.limit)
    overrides = parse_overrides(args.appliance_set)
    results: dict[str, Any] = {"turns": sum(map(len, calls)), "calls": len(calls),
                               "per_call": args.per_call, "seed": args.seed, "systems": {},
                               "cpus": os.cpu_count(), "load_at_start": os.getloadavg(),
                               "appliance_set": args.appliance_set}
    WORKDIR.mkdir(parents=True, exist_ok=True)
    async with GeminiStandIn(WORKDIR, ttft_s=args.ttft) as gemini, AsyncExitStack() as stack:
        systems = {}
        for name in args.systems.split(","):
            system = await _start(name, gemini.url, stack, results, overrides)
            if system is not None:
                systems[name] = system
        tallies = {name: _Tally() for name in systems}
        for name, system in systems.items():
            tallies[name].startup_s = system.startup_s
        await _play_set(systems, tallies, calls, gemini)
        await gemini.say("")                  # the barge-ins talk over the usual replies
        for pairs in plan_bargeins(manifest, args.bargeins, args.seed):
            for name, system in systems.items():
                outcomes = await run_bargein_call(system, pairs, speech_set.DEFAULT_OUT)
                tallies[name].clears.extend(outcomes)
                print(f"  {name} barge-ins: clear {outcomes} ms", flush=True)
        for name, tally in tallies.items():
            results["systems"][name] = tally.result()
    results["load_at_end"] = os.getloadavg()
    return results


async def _play_set(systems: dict[str, Appliance | Pipecat], tallies: dict[str, _Tally],
                    calls: list[list[dict[str, Any]]], gemini: GeminiStandIn) -> None:
    """The turn set's calls, each system in turn."""
    for number, entries in enumerate(calls, 1):
        for name, system in systems.items():
            started, before = time.monotonic(), await gemini.requests()
            metrics, info = await run_call(system, entries, speech_set.DEFAULT_OUT, gemini)
            tallies[name].requests += await gemini.requests() - before
            tallies[name].busy_s += time.monotonic() - started
            info["load_1min"] = round(os.getloadavg()[0], 2)
            tallies[name].turns.extend(metrics)
            tallies[name].calls.append(info)
            print(f"  {name} call {number}/{len(calls)}: {len(metrics)} turns, "
                  f"{sum(m.cut_off for m in metrics)} cut off, "
                  f"load {info['load_1min']}", flush=True)
    for name, system in systems.items():
        if isinstance(system, Appliance):
            tallies[name].speculation = system.speculation()   # the set's calls only


def parse_overrides(items: list[str]) -> dict[tuple[str, str], str]:
    """["call.caller_pause_margin_ms=300"] -> {("call", "caller_pause_margin_ms"): "300"}."""
    overrides = {}
    for item in items:
        name, sep, value = item.partition("=")
        section, dot, key = name.partition(".")
        if not (sep and dot and section and key):
            raise SystemExit(f"--appliance-set {item!r}: expected SECTION.KEY=VALUE")
        overrides[(section.strip(), key.strip())] = value.strip()
    return overrides


def rescore(results: dict[str, Any]) -> dict[str, Any]:
    """The metrics again from each call's saved timeline (bursts as 20 ms frames, clears), e.g.
    after a change to turn_metrics, without playing the calls again."""
    manifest = {e["file"]: e for e in speech_set.load()}
    for system in results["systems"].values():
        if "turns" not in system:
            continue
        files = [t["file"] for t in system["turns"]]
        turns: list[TurnMetrics] = []
        for call in system["calls"]:
            events = [{"event": "media", "_at": first + i * 0.02}
                      for first, last in call["bot_bursts_s"]
                      for i in range(int(round((last - first) / 0.02)) + 1)]
            events += [{"event": "clear", "_at": at} for at in call["clears_s"]]
            starts = call["turn_starts_s"]
            for index, start in enumerate(starts):
                end = starts[index + 1] if index + 1 < len(starts) else float("inf")
                entry = manifest[files[len(turns)]]
                turns.append(turn_metrics(entry, events, start, end))
        system["turns"] = [t.as_dict() for t in turns]
        system["summary"] = {**system["summary"], **summarize(turns)}   # keeps cost, barge-ins
    return results


def _plain(value: object) -> object:
    """numpy scalars (a numpy bool once cost a 25-minute run its JSON) as Python values."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turn_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="appliance,pipecat",
                        help="comma separated: appliance, pipecat (default both)")
    parser.add_argument("--per-call", type=int, default=8)
    parser.add_argument("--limit", type=int, help="only the first N turns (a quick check)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--bargeins", type=int, default=8,
                        help="barge-ins spoken over the bot's answers (0: none)")
    parser.add_argument("--appliance-set", action="append", default=[], metavar="S.KEY=VALUE",
                        help="override one key of the appliance's config.ini (repeatable), "
                             "e.g. call.caller_pause_margin_ms=300")
    parser.add_argument("--bargeins-only", action="store_true",
                        help="play only the barge-in calls, not the turn set")
    parser.add_argument("--ttft", type=float, default=0.3,
                        help="the Gemini stand-in's first token after this many seconds")
    parser.add_argument("--out", type=Path, default=RESULTS / "turn_taking")
    parser.add_argument("--notes", type=Path, help="a Markdown file to include in OUT.md")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the metrics of OUT.json from its call timelines")
    args = parser.parse_args(argv)
    if args.rescore:
        results = rescore(json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8")))
    else:
        started = time.monotonic()
        results = asyncio.run(main_async(args))
        results["wall_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=_plain)
                                             + "\n", encoding="utf-8")
    notes = args.notes.read_text(encoding="utf-8").strip() if args.notes else ""
    write_report(args.out.with_suffix(".md"), results, notes)
    print(f"wrote {args.out}.md/.json in {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
