"""The offline model: a small instruct GGUF through llama-cpp-python, loaded once at start-up.

- One worker thread owns the `Llama` object; every generation (and the warm-up) runs there,
  one at a time, under a lock. Tokens reach the event loop through an asyncio queue; cancelling
  the consumer sets a stop flag that the worker checks at every token.
- KV-cache reuse: `Llama.generate` keeps the tokens of the last evaluation and, when the next
  prompt starts with the same tokens, evaluates only the rest. The prompt therefore puts what
  never changes first (system_static, then the tools), then the conversation; `warm()`
  evaluates the static part at start-up, so the first offline turn already pays only for its
  own tokens. Each stream reports how many prompt tokens were reused (`StreamDone.cached_tokens`
  and `last_stats`).
- The prompt is rendered with the model's own chat template (from the GGUF metadata; ChatML if
  it has none). Tools follow the Qwen2.5 convention: declared in the system message inside
  <tools></tools>, called as <tool_call>{"name": ..., "arguments": {...}}</tool_call>, answered
  in a user message inside <tool_response></tool_response>.
- Tool calls: the model writes freely; when its output starts "<tool_call>", generation is
  restarted from that point under a GBNF grammar built from the tools' JSON schemas, so the
  call is always valid JSON naming a real tool with valid arguments. Plain text pays nothing
  for the grammar. `tool_choice="required"` starts directly in the grammar.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

from ..config import LocalLlmSettings
from .base import (ChatMessage, ChatRequest, ModelError, StreamDone, StreamEvent, TextChunk,
                   ToolCall, ToolCallChunk, ToolSpec)
from .fit import MIN_ANSWER, fit_step

log = logging.getLogger(__name__)

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
_STOP_STRINGS = ("<|im_end|>", "<|im_start|>", "<|endoftext|>", "<|eot_id|>", "</s>",
                 "<tool_response>", TOOL_CLOSE)
_CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
           "{{ message['content'] }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_MAX_TOOL_TOKENS = 512
_MAX_STRING_CHARS = 120   # bound on free-text tool arguments under the grammar


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


@dataclass(eq=False)
class _Job:
    tools: tuple[ToolSpec, ...]
    tool_choice: str
    max_tokens: int
    emit: Callable[[str, Any], None]
    stop: threading.Event


class LocalModel:
    """Create with `LocalModel.load(settings)` (blocking: run it in a thread at start-up)."""

    def __init__(self, llama: Any, settings: LocalLlmSettings, path: Path,
                 sampling: Sampling = Sampling()) -> None:
        self._llm = llama
        self.settings = settings
        self.path = path
        self.sampling = sampling
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="local-llm")
        self._lock = threading.Lock()
        self._render_template = _template(llama)
        self._grammars: dict[str, Any] = {}
        self._waiting = 0                      # generations queued: a prefill yields to them
        self._waiting_lock = threading.Lock()
        self.last_stats: LocalStats | None = None
        self._jobs: set[_Job] = set()          # running or queued generations
        self._closed = False

    @classmethod
    def load(cls, settings: LocalLlmSettings, sampling: Sampling = Sampling()) -> "LocalModel":
        from llama_cpp import Llama

        path = settings.model.path
        if not path.is_file():
            raise ModelError("not_loaded", f"{path} does not exist", outage=False)
        started = time.perf_counter()
        llama = Llama(model_path=str(path), n_ctx=settings.context_tokens,
                      n_threads=settings.threads, n_threads_batch=settings.threads,
                      n_batch=512, verbose=False)
        log.info("local model %s loaded in %.0f ms (context %d tokens, %d threads)",
                 path.name, (time.perf_counter() - started) * 1000, settings.context_tokens,
                 settings.threads)
        return cls(llama, settings, path, sampling)

    @property
    def name(self) -> str:
        return f"local:{self.path.name}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for job in list(self._jobs):
            job.stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        closer = getattr(self._llm, "close", None)
        if callable(closer):
            closer()

    # -- prompt ---------------------------------------------------------------------------

    def render(self, request: ChatRequest, messages: Sequence[ChatMessage] | None = None,
               generation: bool = True) -> str:
        """The full prompt text, ending where the model's answer starts.

        With `generation=False`: the conversation so far, which every prompt of the next turn
        starts with (what `prefill()` evaluates ahead of time).
        """
        system = request.system_static
        if request.tools:
            system = f"{system}\n\n{tools_block(request.tools)}"
        if request.system_dynamic:
            system = f"{system}\n\n{request.system_dynamic}"
        chat: list[dict[str, str]] = [{"role": "system", "content": system.strip()}]
        for m in (request.messages if messages is None else messages):
            role, content = _as_template_message(m)
            if chat[-1]["role"] == role == "user" and m.role == "tool":
                chat[-1]["content"] += "\n" + content  # several results in one message
            else:
                chat.append({"role": role, "content": content})
        prompt = self._render_template(chat, generation)
        if not generation:
            return prompt
        prompt += request.prefix
        if request.tool_choice == "required" and request.tools:
            prompt += TOOL_OPEN + "\n"
        return prompt

    def _budget(self, request: ChatRequest) -> int:
        """Prompt tokens that leave room for the answer (never less than half the context)."""
        ctx = self.settings.context_tokens
        return ctx - min(self._max_tokens(request), ctx // 2) - 8

    def _tokens_for(self, request: ChatRequest) -> tuple[str, list[int]]:
        """Render and tokenize so that it fits the context (a prompt that does not makes
        llama.cpp fail with "failed to find a memory slot"): drop the oldest history first,
        then the knowledge-base passages (oldest turn first), then shorten the longest
        message of the current turn."""
        messages = list(request.messages)
        budget = self._budget(request)
        while True:
            prompt = self.render(request, messages)
            tokens = self._tokenize(prompt)
            if len(tokens) <= budget:
                return prompt, tokens
            fitted = fit_step(messages, len(tokens) - budget)
            if fitted is None and len(tokens) <= self.settings.context_tokens - MIN_ANSWER - 8:
                return prompt, tokens          # a shorter answer then (see _generate_round)
            if fitted is None:
                raise ModelError("prompt_too_long", f"the prompt needs {len(tokens)} tokens, "
                                 f"the context allows {budget}", outage=False)
            messages, what = fitted
            log.info("local prompt of %d tokens over budget %d; %s", len(tokens), budget, what)

    def _tokenize(self, prompt: str) -> list[int]:
        llm = self._llm
        bos = llm.token_bos()
        bos_text = llm._model.token_get_text(bos) if bos != -1 else ""
        add_bos = bool(llm._model.add_bos_token()) and not (bos_text and
                                                          prompt.startswith(bos_text))
        return llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def _max_tokens(self, request: ChatRequest) -> int:
        return request.max_tokens or self.settings.max_tokens

    # -- streaming ------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        if self._closed:
            raise ModelError("not_loaded", "the local model is closed", outage=False)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def emit(kind: str, item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
            except RuntimeError:  # the loop is closed: nobody listens any more
                job.stop.set()

        job = _Job(tools=request.tools if request.tool_choice != "none" else (),
                   tool_choice=request.tool_choice,
                   max_tokens=min(self._max_tokens(request), self.settings.context_tokens // 2),
                   emit=emit, stop=threading.Event())
        with self._waiting_lock:
            self._waiting += 1
        self._jobs.add(job)
        loop.run_in_executor(self._executor, self._run, request, job)
        try:
            while True:
                kind, item = await queue.get()
                if kind == "event":
                    yield item
                elif kind == "error":
                    raise item
                else:
                    return
        finally:
            # Stop at the next token; don't wait: the next job queues behind this one.
            job.stop.set()
            self._jobs.discard(job)

    def _run(self, request: ChatRequest, job: _Job) -> None:
        """Worker thread: one whole round (text, then maybe a grammar-constrained call)."""
        with self._waiting_lock:
            self._waiting -= 1
        if job.stop.is_set():
            job.emit("end", None)
            return
        try:
            with self._lock:
                self._generate_round(request, job)
        except ModelError as exc:
            job.emit("error", exc)
        except Exception as exc:  # noqa: BLE001 - reported to the caller as a model error
            log.exception("local model failed")
            job.emit("error", ModelError("local_error", f"{type(exc).__name__}: {exc}",
                                         outage=False))
        job.emit("end", None)

    def _generate_round(self, request: ChatRequest, job: _Job) -> None:
        started = time.perf_counter()
        prompt, tokens = self._tokens_for(request)
        job.max_tokens = min(job.max_tokens, self.settings.context_tokens - len(tokens) - 8)
        cached = _common_prefix(self._llm._input_ids, tokens)
        first_at: list[float] = []
        produced = 0
        text = ""
        if not (request.tool_choice == "required" and job.tools):
            text, produced, wants_tool = self._text_phase(tokens, job, first_at)
            if job.stop.is_set() or not wants_tool:
                self._finish(job, started, first_at, tokens, cached, produced, "stop")
                return
            tool_prompt = prompt + text + TOOL_OPEN + "\n"
        else:
            tool_prompt = prompt
        call, used = self._tool_phase(self._tokenize(tool_prompt), job, first_at)
        produced += used
        if call is not None:
            job.emit("event", ToolCallChunk(call))
        self._finish(job, started, first_at, tokens, cached, produced,
                     "tool_calls" if call is not None else "stop")

    def _finish(self, job: _Job, started: float, first_at: list[float], tokens: list[int],
                cached: int, produced: int, reason: str) -> None:
        now = time.perf_counter()
        ttft = ((first_at[0] if first_at else now) - started) * 1000
        self.last_stats = LocalStats(len(tokens), cached, ttft, (now - started) * 1000,
                                     produced)
        log.debug("local round: %d prompt tokens (%d cached), first token %.0f ms, %d tokens "
                  "in %.0f ms", len(tokens), cached, ttft, produced, (now - started) * 1000)
        if not job.stop.is_set():
            job.emit("event", StreamDone(finish_reason=reason, prompt_tokens=len(tokens),
                                         cached_tokens=cached, output_tokens=produced))

    def _sample_args(self) -> dict[str, Any]:
        s = self.sampling
        return {"temp": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p,
                "repeat_penalty": s.repeat_penalty}

    def _text_phase(self, tokens: list[int], job: _Job,
                    first_at: list[float]) -> tuple[str, int, bool]:
        """Free generation. Returns (text emitted, tokens produced, stopped at <tool_call>)."""
        import llama_cpp

        llm = self._llm
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # "<tool_call>" always ends the text (it must never be spoken); it starts a call only
        # when tools are allowed in this round.
        splitter = Splitter(_STOP_STRINGS + (TOOL_OPEN,))
        emitted, produced = "", 0
        for token in llm.generate(tokens, **self._sample_args()):
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
            if produced >= job.max_tokens:
                break
        rest = splitter.flush()
        if rest and not job.stop.is_set():
            job.emit("event", TextChunk(rest))
            emitted += rest
        return emitted, produced, False

    def _tool_phase(self, tokens: list[int], job: _Job,
                    first_at: list[float]) -> tuple[ToolCall | None, int]:
        """Generate one call under the tools' grammar; parse it."""
        import llama_cpp

        llm = self._llm
        grammar = self._grammar(job.tools)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        out, produced = "", 0
        for token in llm.generate(tokens, grammar=grammar, **self._sample_args()):
            if not first_at:
                first_at.append(time.perf_counter())
            if job.stop.is_set() or llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                break
            produced += 1
            out += decoder.decode(llm.detokenize([token], special=False))
            if _json_complete(out) or produced >= _MAX_TOOL_TOKENS:
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

    def _grammar(self, tools: tuple[ToolSpec, ...]) -> Any:
        from llama_cpp import LlamaGrammar

        schema = json.dumps(tool_call_schema(tools), sort_keys=True)
        grammar = self._grammars.get(schema)
        if grammar is None:
            grammar = LlamaGrammar.from_json_schema(schema, verbose=False)
            self._grammars[schema] = grammar
        return grammar

    # -- warm-up --------------------------------------------------------------------------

    async def warm(self, system_static: str,
                   tools: tuple[ToolSpec, ...] = ()) -> LocalStats | None:
        """Evaluate the static start of every prompt now (with the tools of the channel that
        matters most, calls), so no caller waits for it later."""
        marker = "\x00END-OF-STATIC\x00"
        content = f"{system_static}\n\n{tools_block(tools)}" if tools else system_static
        rendered = self._render_template([{"role": "system", "content": content + marker}],
                                         False)
        prefix = rendered[:rendered.index(marker)] if marker in rendered else ""
        stats = await self._evaluate_in_worker(prefix, self.settings.threads)
        if stats is not None:
            log.info("local model warmed: %d static prompt tokens in %.0f ms",
                     stats.prompt_tokens, stats.total_ms)
        return stats

    async def prefill(self, request: ChatRequest, whole: bool = False) -> LocalStats | None:
        """Evaluate a prompt ahead of time, while the model is idle: the conversation so far
        (the next turn then pays only for its new message), or with `whole` the full prompt of
        a turn Gemini is answering (a failover then starts generating at once).
        Gives way to any generation that is waiting (returns None then); one CPU thread."""
        return await self._evaluate_in_worker(self.render(request, generation=whole), 1)

    async def _evaluate_in_worker(self, prompt: str, threads: int) -> LocalStats | None:
        if self._closed:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._evaluate, prompt, threads)

    def _evaluate(self, prompt: str, threads: int, chunk: int = 8) -> LocalStats | None:
        """Worker thread: put `prompt` in the KV cache, a few tokens at a time, reusing the
        prefix already there; stops early when a generation is waiting. A background prefill
        uses one thread, so speech recognition and synthesis keep a core on a 2-core box."""
        with self._lock:
            self._set_threads(threads)
            try:
                return self._evaluate_locked(prompt, chunk)
            finally:
                self._set_threads(self.settings.threads)

    def _set_threads(self, count: int) -> None:
        import llama_cpp

        llama_cpp.llama_set_n_threads(self._llm._ctx.ctx, count, count)

    def _evaluate_locked(self, prompt: str, chunk: int) -> LocalStats | None:
        llm = self._llm
        started = time.perf_counter()
        tokens = self._tokenize(prompt)[: self.settings.context_tokens - 8]
        cached = _common_prefix(llm._input_ids, tokens)
        if cached and cached < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, cached, -1):
            cached = 0
        if cached == 0:
            llm.reset()
        elif cached < llm.n_tokens:
            llm.n_tokens = cached
            llm._requires_eval = True  # the logits are those of a later token
        for start in range(cached, len(tokens), chunk):
            if self._waiting or self._closed:
                return None
            llm.eval(tokens[start:start + chunk])
        elapsed = (time.perf_counter() - started) * 1000
        return LocalStats(len(tokens), cached, elapsed, elapsed, 0)


# -- prompt pieces ---------------------------------------------------------------------------

def tools_block(tools: Sequence[ToolSpec]) -> str:
    """Tool declarations as Qwen2.5-Instruct was trained to read them."""
    lines = [json.dumps({"type": "function", "function": {
        "name": t.name, "description": t.description, "parameters": dict(t.parameters)}},
        ensure_ascii=False) for t in tools]
    return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n"
            "<tools>\n" + "\n".join(lines) + "\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments "
            "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
            '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


def render_call(call: ToolCall) -> str:
    return (f"{TOOL_OPEN}\n" + json.dumps({"name": call.name, "arguments": dict(call.args)},
                                          ensure_ascii=False) + f"\n{TOOL_CLOSE}")


def _as_template_message(m: ChatMessage) -> tuple[str, str]:
    if m.role == "user":
        return "user", f"{m.context}\n\n{m.text}" if m.context else m.text
    if m.role == "assistant":
        parts = [m.text] if m.text else []
        parts.extend(render_call(c) for c in m.tool_calls)
        return "assistant", "\n".join(parts)
    return "user", f"<tool_response>\n{m.text}\n</tool_response>"


def tool_call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """JSON schema of {"name": ..., "arguments": ...} for exactly one of the tools."""
    options = []
    for t in tools:
        options.append({"type": "object", "additionalProperties": False,
                        "required": ["name", "arguments"],
                        "properties": {"name": {"const": t.name},
                                       "arguments": _bounded(dict(t.parameters))}})
    return options[0] if len(options) == 1 else {"oneOf": options}


def _bounded(schema: dict[str, Any]) -> dict[str, Any]:
    """Copy of a schema whose free strings have a length limit (the grammar must end)."""
    out = dict(schema)
    if out.get("type") == "string" and "enum" not in out and "maxLength" not in out:
        out["maxLength"] = _MAX_STRING_CHARS
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _bounded(dict(v)) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    if isinstance(out.get("items"), dict):
        out["items"] = _bounded(dict(out["items"]))
        out.setdefault("maxItems", 10)
    if out.get("type") == "object" and "properties" not in out:
        out["properties"] = {}
        out.setdefault("additionalProperties", False)
    return out


def _template(llama: Any) -> Callable[[list[dict[str, str]], bool], str]:
    """The GGUF's chat template as a function of messages (ChatML when it has none)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    metadata = getattr(llama, "metadata", {}) or {}
    source = metadata.get("tokenizer.chat_template") or _CHATML

    def token_text(token: int) -> str:
        return llama._model.token_get_text(token) if token != -1 else ""

    eos, bos = token_text(llama.token_eos()), token_text(llama.token_bos())
    formatters = {generation: Jinja2ChatFormatter(template=source, eos_token=eos, bos_token=bos,
                                                  add_generation_prompt=generation)
                  for generation in (True, False)}
    chatml = {generation: Jinja2ChatFormatter(template=_CHATML, eos_token="", bos_token="",
                                              add_generation_prompt=generation)
              for generation in (True, False)}

    def render(messages: list[dict[str, str]], generation: bool = True) -> str:
        try:
            return formatters[generation](messages=messages).prompt
        except Exception as exc:  # noqa: BLE001 - a template that rejects our roles
            log.warning("chat template failed (%s); using ChatML", exc)
            return chatml[generation](messages=messages).prompt

    return render


def _common_prefix(previous: Sequence[int], tokens: Sequence[int]) -> int:
    n = 0
    for a, b in zip(previous, tokens):
        if a != b:
            break
        n += 1
    return n


class Splitter:
    """Cuts streamed text at the first sentinel, holding back an end that could start one."""

    def __init__(self, sentinels: Sequence[str]) -> None:
        self.sentinels = tuple(sentinels)
        self.pending = ""

    def feed(self, piece: str) -> tuple[str, str | None]:
        """(text safe to emit now, the sentinel found or None; after a sentinel, stop)."""
        self.pending += piece
        hit: tuple[int, str] | None = None
        for s in self.sentinels:
            i = self.pending.find(s)
            if i != -1 and (hit is None or i < hit[0]):
                hit = (i, s)
        if hit is not None:
            text, self.pending = self.pending[:hit[0]], ""
            return text, hit[1]
        keep = 0
        for s in self.sentinels:
            for n in range(min(len(s) - 1, len(self.pending)), keep, -1):
                if self.pending.endswith(s[:n]):
                    keep = n
                    break
        cut = len(self.pending) - keep
        text, self.pending = self.pending[:cut], self.pending[cut:]
        return text, None

    def flush(self) -> str:
        """What was held back, at the end of the stream (dropped if it looks like markup)."""
        rest, self.pending = self.pending, ""
        return "" if rest.startswith("<") else rest


def _json_complete(text: str) -> bool:
    """True once `text` holds one whole JSON object (braces balanced outside strings)."""
    depth, in_string, escaped, seen = 0, False, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
            seen = True
        elif ch == "}":
            depth -= 1
            if seen and depth == 0:
                return True
    return False
