"""The two phases of one local model round, run on the worker thread: free text, then (when
the text opens "<tool_call>") one call generated under the tools' grammar. Both stop at the
job's stop flag, at an end-of-generation token and at `limit` tokens (the caller keeps
`limit` inside the free context, so llama.cpp never runs out of KV cells)."""

from __future__ import annotations

import codecs
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .base import ModelError, TextChunk, ToolCall, ToolSpec
from .kvcache import common_prefix
from .local_text import STOP_STRINGS, TOOL_OPEN, Splitter, json_complete


PREFILL_CHUNK = 64   # prompt tokens per evaluation while a reply may still be cancelled


@dataclass(eq=False)
class Job:
    tools: tuple[ToolSpec, ...]
    tool_choice: str
    max_tokens: int
    emit: Callable[[str, Any], None]
    stop: threading.Event


def text_phase(llm: Any, tokens: list[int], job: Job, first_at: list[float], limit: int,
           sample: dict[str, Any]) -> tuple[str, int, bool]:
    """Free generation. Returns (text emitted, tokens produced, stopped at <tool_call>).

    The prompt's new tokens are evaluated ``PREFILL_CHUNK`` at a time, checking the job's stop
    flag in between: a speculative reply cancelled while its prompt is being read (the caller
    went on) frees the model within one chunk instead of after the whole prefill (~1.5 s for
    150 new tokens of Qwen2.5-0.5B on 2 cores), so the next turn's reply does not queue
    behind it. ``llm.generate`` then finds all but the last token in the KV cache."""
    import llama_cpp

    _, done = prefill_phase(llm, tokens[:-1], PREFILL_CHUNK, job.stop.is_set)
    if done < len(tokens) - 1:
        return "", 0, False                    # stopped while reading the prompt
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # "<tool_call>" always ends the text (it must never be spoken); it starts a call only
    # when tools are allowed in this round.
    splitter = Splitter(STOP_STRINGS + (TOOL_OPEN,))
    emitted, produced = "", 0
    for token in llm.generate(tokens, **sample):
        if not first_at:
            first_at.append(time.perf_counter())
        if job.stop.is_set() or llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        produced += 1
        text, hit = splitter.feed(decoder.decode(llm.detokenize([token], special=False)))
        if text:
            job.emit("event", TextChunk(text))
            emitted += text
        if hit is not None:
            return emitted, produced, hit == TOOL_OPEN and bool(job.tools)
        if produced >= limit:
            break
    rest = splitter.flush()
    if rest and not job.stop.is_set():
        job.emit("event", TextChunk(rest))
        emitted += rest
    return emitted, produced, False

def tool_phase(llm: Any, tokens: list[int], job: Job, first_at: list[float], limit: int,
           grammar: Any, sample: dict[str, Any]) -> tuple[ToolCall | None, int]:
    """Generate one call under the tools' grammar; parse it."""
    import llama_cpp

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out, produced = "", 0
    for token in llm.generate(tokens, grammar=grammar, **sample):
        if not first_at:
            first_at.append(time.perf_counter())
        if job.stop.is_set() or llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        produced += 1
        out += decoder.decode(llm.detokenize([token], special=False))
        if json_complete(out) or produced >= limit:
            break
    if job.stop.is_set():
        return None, produced
    try:
        data = json.loads(out, strict=False)  # the grammar allows raw control chars
        call = ToolCall(name=str(data["name"]), args=dict(data.get("arguments") or {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError("bad_response", f"unparsable tool call {out[:80]!r}: {exc}",
                         started=True, outage=False) from None
    return call, produced


def prefill_phase(llm: Any, tokens: list[int], chunk: int,
                  should_stop: Callable[[], bool]) -> tuple[int, int]:
    """Put `tokens` in the KV cache, reusing the prefix already there, `chunk` tokens at a
    time; stops early when `should_stop()`. Returns (tokens reused, tokens now in place)."""
    cached = common_prefix(llm._input_ids, tokens)
    if cached and cached < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, cached, -1):
        cached = 0
    if cached == 0:
        llm.reset()
    elif cached < llm.n_tokens:
        llm.n_tokens = cached
        llm._requires_eval = True  # the logits are those of a later token
    done = cached
    for start in range(cached, len(tokens), chunk):
        if should_stop():
            break
        llm.eval(tokens[start:start + chunk])
        done = start + len(tokens[start:start + chunk])
    return cached, done
