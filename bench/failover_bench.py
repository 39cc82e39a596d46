"""What a Gemini failure costs the caller, measured through the real engine.

    python -m bench.failover_bench [--shape qwen0.5b|test] [--runs 5]

Gemini is the loopback fake (real google-genai client, real SSE); the local model is the
generated random-weight GGUF with Qwen2.5-0.5B's shape (or the tiny test model), loaded by
the product's LocalModel. Each run is a fresh engine on a conversation with two earlier turns
answered by Gemini, a second of "caller listening" (when the engine keeps the local model's
cache on the conversation), then the turn under test. Reported (medians over the runs):

- first text: from reply() to the first words of the answer;
- extra delay: what the failover adds beyond the limit that triggered it (first text minus
  first_token_timeout_ms for a timeout; for a broken/stalled stream, the gap between Gemini's
  last words and the local model's first words, minus the stall limit);
- filler: when "one moment" was yielded; longest silence: the longest stretch with nothing new
  to say (fillers count as speech, playback of earlier text is not credited).

Writes bench/results/failover.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.conversation.engine import Engine, EngineOptions
from appliance.conversation.events import TextDelta
from appliance.conversation.tools import ToolRegistry
from appliance.llm.failover import ChatModels
from appliance.llm.gemini import GeminiModel
from appliance.llm.local import LocalModel
from appliance.store.db import Database
from tests.support.fakes import CACHE, listen, make_settings
from tests.support.fakes.gemini_server import FakeGemini, Reply

RESULTS = Path(__file__).resolve().parent / "results" / "failover.md"
FIRST_TOKEN_TIMEOUT_MS = 1500   # config.ini defaults
STALL_TIMEOUT_MS = 2000
QUESTION = "Hi, when do you open tomorrow, and do you also repair washing machines?"
ANSWER = ("We open at nine tomorrow morning, and yes, we repair washing machines of every "
          "brand; would you like me to book a technician for you?")
HISTORY = [("Hello, is this Sunrise Appliances?", "Yes, this is Sunrise Appliances. How can I "
            "help you today?"),
           ("My fridge is making a loud noise.", "I'm sorry to hear that. We repair fridges, "
            "and repairs come with a ninety-day warranty.")]


@dataclass(frozen=True)
class Scenario:
    name: str
    reply: Reply | None          # None: the Gemini server is down (connection refused)
    what: str
    prefill: bool = True
    offline: bool = False        # no API key at all


SCENARIOS = [
    Scenario("cloud, first token at 300 ms", Reply(text=ANSWER, ttft_s=0.3, tokens_per_s=60),
             "Gemini healthy (the fake answers after 300 ms)"),
    Scenario("first-token timeout", Reply(text=ANSWER, ttft_s=30),
             f"Gemini silent; the {FIRST_TOKEN_TIMEOUT_MS} ms limit fires"),
    Scenario("first-token timeout, no prefill", Reply(text=ANSWER, ttft_s=30),
             "as above, without keeping the local cache on the conversation", prefill=False),
    Scenario("HTTP 503", Reply(status=503), "Gemini answers 503 at once"),
    Scenario("HTTP 429", Reply(status=429), "Gemini answers 429 at once"),
    Scenario("connection refused", None, "nothing listens on the Gemini port"),
    Scenario("broken midway", Reply(text=ANSWER, tokens_per_s=60, break_after=3),
             "the connection drops after 3 chunks (9 words)"),
    Scenario("stall midway", Reply(text=ANSWER, tokens_per_s=60, stall_after=3, stall_s=30),
             f"no data after 3 chunks; the {STALL_TIMEOUT_MS} ms stall limit fires"),
    Scenario("offline (no API key)", Reply(text=ANSWER),
             "local model only, two earlier turns in the history", offline=True),
]


@dataclass
class Run:
    first_text_ms: float
    filler_ms: float | None
    silence_ms: float
    gap_ms: float | None       # broken/stalled: Gemini's last words -> local's first words
    model: str
    prompt_tokens: int
    cached_tokens: int
    prefill_ms: float


async def one_run(scenario: Scenario, local: LocalModel, workdir: Path) -> Run:
    async with FakeGemini() as fake:
        settings = make_settings(
            workdir, gemini_url=fake.base_url, api_key="" if scenario.offline else "bench-key",
            chat_gguf=local.path,
            sections={"gemini": {"first_token_timeout_ms": FIRST_TOKEN_TIMEOUT_MS,
                                 "stall_timeout_ms": STALL_TIMEOUT_MS,
                                 "retry_after_failure_s": 600},
                      "local_llm": {"max_tokens": 48}})
        db = await Database.open(workdir / f"bench-{time.monotonic_ns()}.db")
        gemini = None if scenario.offline else GeminiModel(settings.gemini)
        engine = Engine(settings, db, ChatModels(gemini=gemini, local=local),
                        ToolRegistry.default(),
                        options=EngineOptions(prefill_local=scenario.prefill))
        try:
            await engine.start()
            if scenario.offline:
                # Two earlier turns, as stored (random weights would answer with junk text
                # several times longer than a real answer).
                customer = await engine.memory.customer("+972501234567")
                for question, answer in HISTORY:
                    for role, text in (("user", question), ("assistant", answer)):
                        await engine.memory.add_turn(customer.id, "call", None, role, text)
            conversation = await engine.open("+972501234567", "call")
            if not scenario.offline:
                for question, answer in HISTORY:
                    fake.script(Reply(text=answer))
                    await listen(conversation, question)
            # The caller listens to the answer and speaks (several seconds on a real call);
            # meanwhile the engine puts the conversation in the local model's cache.
            listening = time.monotonic()
            await asyncio.wait_for(engine.idle(), 60)
            prefill_ms = (time.monotonic() - listening) * 1000
            await asyncio.sleep(max(0.0, 1.0 - prefill_ms / 1000))
            if scenario.reply is None:
                await fake.stop()
            else:
                fake.script(scenario.reply)
            heard = await listen(conversation, QUESTION)
        finally:
            await engine.close()
            db.close()
    gap = None
    if scenario.name.endswith("midway"):
        deltas = [t for t, e in heard.events if isinstance(e, TextDelta)]
        gap = max(b - a for a, b in zip(deltas, deltas[1:])) * 1000
    stats = local.last_stats
    return Run(first_text_ms=heard.first_text * 1000,
               filler_ms=heard.fillers[0][0] * 1000 if heard.fillers else None,
               silence_ms=heard.longest_silence * 1000, gap_ms=gap, model=heard.done.model,
               prompt_tokens=stats.prompt_tokens if stats else 0,
               cached_tokens=stats.cached_tokens if stats else 0, prefill_ms=prefill_ms)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def extra_delay(scenario: Scenario, run_first: float | None, gap: float | None) -> float | None:
    if scenario.name.startswith("first-token timeout") and run_first is not None:
        return run_first - FIRST_TOKEN_TIMEOUT_MS
    if scenario.name == "stall midway" and gap is not None:
        return gap - STALL_TIMEOUT_MS
    if scenario.name == "broken midway":
        return gap
    return None


@dataclass
class Row:
    scenario: Scenario
    first: float | None
    extra: float | None
    filler: float | None
    silence: float | None
    gap: float | None
    prefill: float | None
    last: Run


async def speed(local: LocalModel) -> dict[str, float]:
    """Prefill and generation rates of the local model here (cold prompt, no cache)."""
    from appliance.llm.base import ChatMessage, ChatRequest

    words = " ".join(["please"] * 300)
    request = ChatRequest(system_static=f"Cold prompt {time.monotonic_ns()}.", system_dynamic="",
                          messages=(ChatMessage("user", words),), max_tokens=64)
    async for _ in local.stream(request):
        pass
    stats = local.last_stats
    assert stats is not None
    new = stats.prompt_tokens - stats.cached_tokens
    return {"prefill_tokens": new, "prefill_tps": new / (stats.ttft_ms / 1000),
            "gen_tps": max(stats.output_tokens - 1, 1) / max(
                (stats.total_ms - stats.ttft_ms) / 1000, 1e-6)}


async def main_async(shape: str, runs: int) -> str:
    from tests.support.models import make_chat_gguf

    print(f"building/reusing the {shape} chat model ...", flush=True)
    path = await asyncio.to_thread(make_chat_gguf, CACHE, shape)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        settings = make_settings(workdir, chat_gguf=path, sections={
            "local_llm": {"max_tokens": 48, "context_tokens": 4096}})
        local = await asyncio.to_thread(LocalModel.load, settings.local_llm)
        rows = []
        try:
            rates = await speed(local)
            print(f"local model: prefill {rates['prefill_tps']:.0f} tokens/s, generation "
                  f"{rates['gen_tps']:.0f} tokens/s", flush=True)
            for scenario in SCENARIOS:
                results = [await one_run(scenario, local, workdir) for _ in range(runs)]
                first = _median([r.first_text_ms for r in results])
                gap = _median([r.gap_ms for r in results])
                row = Row(scenario, first, extra_delay(scenario, first, gap),
                          _median([r.filler_ms for r in results]),
                          _median([r.silence_ms for r in results]), gap,
                          _median([r.prefill_ms for r in results]) if scenario.prefill
                          else None, results[-1])
                rows.append(row)
                print(f"{scenario.name:34} first text {_ms(first):>6} ms  extra "
                      f"{_ms(row.extra):>6} ms  silence {_ms(row.silence):>6} ms  "
                      f"{row.last.model}", flush=True)
        finally:
            local.close()
    return report(shape, runs, path, rates, rows)


def report(shape: str, runs: int, path: Path, rates: dict[str, float], rows: list[Row]) -> str:
    import llama_cpp
    from google import genai

    lines = [
        "# Failover: what a Gemini failure costs the caller",
        "",
        f"`python -m bench.failover_bench --shape {shape} --runs {runs}`; medians of {runs} "
        "runs. Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"llama-cpp-python {llama_cpp.__version__}, google-genai {genai.__version__}.",
        f"Local model: `{path.name}` (random weights, {shape} shape, 2 threads, max 48 tokens): "
        f"prefill {rates['prefill_tps']:.0f} tokens/s ({rates['prefill_tokens']:.0f}-token cold "
        f"prompt), generation {rates['gen_tps']:.0f} tokens/s. Gemini: the loopback fake "
        "through the real google-genai client. Limits: "
        f"first_token_timeout_ms={FIRST_TOKEN_TIMEOUT_MS}, stall_timeout_ms={STALL_TIMEOUT_MS} "
        "(config.ini defaults), filler after 1000 ms on a call.",
        "",
        "| scenario | what happens | first text ms | extra delay ms | filler at ms | "
        "longest silence ms | Gemini->local gap ms | answered by | local prompt / reused "
        "tokens | background prefill ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tokens = (f"{r.last.prompt_tokens} / {r.last.cached_tokens}" if "local" in r.last.model
                  else "-")
        lines.append(f"| {r.scenario.name} | {r.scenario.what} | {_ms(r.first)} | "
                     f"{_ms(r.extra)} | {_ms(r.filler)} | {_ms(r.silence)} | {_ms(r.gap)} | "
                     f"{r.last.model} | {tokens} | {_ms(r.prefill)} |")
    lines += [
        "",
        "- *extra delay*: first text minus the first-token limit (timeouts); for a broken "
        "stream the gap between Gemini's last words and the local model's first; for a stall "
        "that gap minus the stall limit.",
        "- *longest silence* does not credit the playback of text already produced, so it is "
        "an upper bound of what the caller hears as silence.",
        "- *background prefill*: after each answer the engine puts the conversation in the "
        "local model's KV cache while the caller listens (off the caller's path); the run "
        "waits for it, then at least 1 s. Without it (the \"no prefill\" row) a failover turn "
        "re-evaluates the whole conversation.",
        "- The generated model has a small byte-level vocabulary, so the same text costs "
        "about 2-3 times more tokens than with the real Qwen2.5 tokenizer; cold-prompt times "
        "are pessimistic by that factor.",
        "- Random weights: the local model's words are gibberish, its timing is real.",
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.failover_bench")
    parser.add_argument("--shape", choices=("qwen0.5b", "test"), default="qwen0.5b")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(asyncio.run(main_async(args.shape, args.runs)))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
