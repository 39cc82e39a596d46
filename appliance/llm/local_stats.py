"""Numbers the local model keeps: sampling settings, one round's stats, totals since start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.6
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1


@dataclass(frozen=True)
class LocalStats:
    """One generation, for logs, tests and benchmarks. Times in milliseconds."""

    prompt_tokens: int
    cached_tokens: int      # prompt tokens whose KV cache was reused
    ttft_ms: float          # from the start of the job to the first generated token
    total_ms: float
    output_tokens: int

    @property
    def new_tokens(self) -> int:
        """Prompt tokens that had to be evaluated (not found in the KV cache)."""
        return self.prompt_tokens - self.cached_tokens


@dataclass
class LocalCounters:
    """Totals since start-up (generations and background prefills), for /healthz and tests."""

    rounds: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    evaluated_tokens: int = 0       # prompt tokens computed (prefill), rounds and prefills
    last_new_tokens: int = 0        # what the last round had to evaluate of its prompt
    prefills: int = 0
    trimmed_prompts: int = 0        # prompts cut to fit the context

    def add_round(self, stats: LocalStats) -> None:
        self.rounds += 1
        self.prompt_tokens += stats.prompt_tokens
        self.cached_tokens += stats.cached_tokens
        self.evaluated_tokens += stats.new_tokens
        self.last_new_tokens = stats.new_tokens

    def add_prefill(self, evaluated: int) -> None:
        self.prefills += 1
        self.evaluated_tokens += evaluated


def status_dict(c: LocalCounters, sessions: dict[str, float | int],
                warm: LocalStats | None) -> dict[str, Any]:
    """The local model's part of /healthz: reused vs evaluated prompt tokens, snapshots."""
    out: dict[str, Any] = {
        "rounds": c.rounds, "prompt_tokens": c.prompt_tokens,
        "cached_tokens": c.cached_tokens, "evaluated_tokens": c.evaluated_tokens,
        "last_new_tokens": c.last_new_tokens, "prefills": c.prefills,
        "trimmed_prompts": c.trimmed_prompts, "sessions": sessions}
    if warm is not None:
        out["static_tokens"] = warm.prompt_tokens
        out["warm_ms"] = round(warm.total_ms)
    return out
