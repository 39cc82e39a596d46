"""The offline model: a small instruct GGUF through llama-cpp-python, loaded once at start-up.

- One worker thread owns the `Llama`; every generation, warm-up and prefill runs there, one
  at a time, under a lock. Tokens reach the event loop through an asyncio queue; cancelling
  the consumer sets a stop flag checked at every token.
- Built for 2 cores (local_prompt.py): `system_local`, a short persona, replaces the cloud
  prompt; tools are one line each; every prompt is fitted to the context (history first,
  then passages) and generation stops before the context is full (no "failed to find a
  memory slot"). A GBNF grammar from the tools' schemas makes every call valid
  (local_phases.py), so the prompt need not carry the schemas.
- KV-cache reuse: `Llama.generate` reuses the longest common token prefix with what the
  context holds, so the prompt puts what never changes first (static prompt and tools,
  evaluated by `warm()` at start-up), then the conversation. Several conversations share one
  model: each request's `session` selects its own KV snapshot (kvcache.py), so a conversation
  that comes back after another one pays only for its new message. `counters` (in /healthz
  through `status()`) count reused and evaluated prompt tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

from ..config import LocalLlmSettings
from .base import (ChatMessage, ChatRequest, ModelError, StreamDone, StreamEvent, ToolCall, ToolCallChunk, ToolSpec)
from .kvcache import SessionStates, common_prefix
from .llama_load import decode_threads, open_llama, without_amx
from .local_phases import Job, prefill_phase, text_phase, tool_phase
from .local_prompt import (PromptTooLong, fit_messages, local_messages, static_part,
                           static_prompt_check)
from .local_stats import LocalCounters, LocalStats, Sampling, status_dict
from .local_text import (TOOL_CLOSE, TOOL_OPEN, Splitter, as_template_message, chat_template,
                         render_call, tool_call_schema)

__all__ = ["LocalModel", "LocalStats", "LocalCounters", "Sampling", "Splitter",
           "render_call", "tool_call_schema", "TOOL_CLOSE", "without_amx"]

log = logging.getLogger(__name__)
DEFAULT_SAMPLING = Sampling()

_MAX_TOOL_TOKENS = 512
_MIN_TOOL_ROOM = 48        # fewer free context cells than this: no tool call is attempted
_CONTEXT_MARGIN = 8
# A spoken answer is "up to three short sentences" (conversation/prompt.py), ~40-70 tokens. A
# small local model that rambles on would hold a core for seconds per turn (decoding, then
# Piper for every word) while the caller has long stopped listening: on a call its answer
# stops here, whatever [local_llm] max_tokens allows the written channels.
VOICE_MAX_TOKENS = 96


class LocalModel:
    """Create with `LocalModel.load(settings)` (blocking: run it in a thread at start-up)."""

    def __init__(self, llama: Any, settings: LocalLlmSettings, path: Path,
                 sampling: Sampling = DEFAULT_SAMPLING) -> None:
        self._llm = llama
        self.settings = settings
        self.path = path
        self.sampling = sampling
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="local-llm")
        self._lock = threading.Lock()
        self._render_template = chat_template(llama)
        self._grammars: dict[str, Any] = {}
        self._waiting = 0                      # generations queued: a prefill yields to them
        self._waiting_lock = threading.Lock()
        self.last_stats: LocalStats | None = None
        self.counters = LocalCounters()
        self.sessions = SessionStates(llama)
        self.warm_stats: LocalStats | None = None
        self._jobs: set[Job] = set()          # running or queued generations
        self._closed = False

    @classmethod
    def load(cls, settings: LocalLlmSettings, sampling: Sampling = DEFAULT_SAMPLING
             ) -> LocalModel:
        path = settings.model.path
        if not path.is_file():
            raise ModelError("not_loaded", f"{path} does not exist", outage=False)
        started = time.perf_counter()
        llama = open_llama(path, settings.context_tokens, settings.threads)
        log.info("local model %s loaded in %.0f ms (context %d tokens, %d threads)",
                 path.name, (time.perf_counter() - started) * 1000, settings.context_tokens,
                 settings.threads)
        return cls(llama, settings, path, sampling)

    @classmethod
    def tokenizer_only(cls, settings: LocalLlmSettings) -> "LocalModel":
        """The model's tokenizer and template without its weights, for `appliance doctor`:
        `LocalModel.tokenizer_only(s).check_static(local_static_prompt(...), tools)`."""
        llama = open_llama(settings.model.path, settings.context_tokens, 1, vocab_only=True)
        return cls(llama, settings, settings.model.path)

    def status(self) -> dict[str, Any]:
        """For /healthz: the KV cache's work so far (reused vs evaluated prompt tokens)."""
        return status_dict(self.counters, self.sessions.counters.as_dict(), self.warm_stats)

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
        system = static_part(request.system_local or request.system_static, request.tools)
        if request.system_dynamic:
            system = f"{system}\n\n{request.system_dynamic}"
        chat: list[dict[str, str]] = [{"role": "system", "content": system.strip()}]
        for m in local_messages(request.messages if messages is None else messages):
            role, content = as_template_message(m)
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

    def budget(self, request: ChatRequest) -> int:
        """Prompt tokens allowed: the context less the answer's room (at most a quarter of
        the context; a longer answer stops when the context is full) and a small margin."""
        context = self.settings.context_tokens
        return context - min(self._max_tokens(request), context // 4) - _CONTEXT_MARGIN

    def _tokens_for(self, request: ChatRequest) -> tuple[str, list[int]]:
        """Render and tokenize, cut to fit the context: the oldest history first, then the
        current message's passages (local_prompt.fit_messages)."""
        def count(messages: Sequence[ChatMessage]) -> int:
            return len(self._tokenize(self.render(request, messages)))

        budget = self.budget(request)
        try:
            fitted = fit_messages(local_messages(request.messages), budget, count)
        except PromptTooLong as exc:
            raise ModelError("prompt_too_long", str(exc), outage=False) from None
        if fitted.dropped_messages or fitted.cut_passages or fitted.cut_text:
            self.counters.trimmed_prompts += 1
            log.info("local prompt cut to %d of %d tokens: %d old messages dropped%s%s",
                     fitted.tokens, budget, fitted.dropped_messages,
                     ", passages shortened" if fitted.cut_passages else "",
                     ", the message shortened" if fitted.cut_text else "")
        prompt = self.render(request, fitted.messages)
        return prompt, self._tokenize(prompt)

    def _tokenize(self, prompt: str) -> list[int]:
        if self._closed:   # the C model is freed: touching it would crash the process
            raise ModelError("not_loaded", "the local model is closed", outage=False)
        llm = self._llm
        bos = llm.token_bos()
        bos_text = llm._model.token_get_text(bos) if bos != -1 else ""
        add_bos = bool(llm._model.add_bos_token()) and not (bos_text and
                                                          prompt.startswith(bos_text))
        return llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def _max_tokens(self, request: ChatRequest) -> int:
        limit = request.max_tokens or self.settings.max_tokens
        return min(limit, VOICE_MAX_TOKENS) if request.voice else limit

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

        job = Job(tools=request.tools if request.tool_choice != "none" else (),
                   tool_choice=request.tool_choice, max_tokens=self._max_tokens(request),
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

    def _run(self, request: ChatRequest, job: Job) -> None:
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
        except Exception as exc:
            log.exception("local model failed")
            job.emit("error", ModelError("local_error", f"{type(exc).__name__}: {exc}",
                                         outage=False))
        job.emit("end", None)

    def _generate_round(self, request: ChatRequest, job: Job) -> None:
        started = time.perf_counter()
        prompt, tokens = self._tokens_for(request)
        self.sessions.activate(request.session)
        cached = common_prefix(self._llm._input_ids, tokens)
        first_at: list[float] = []
        produced = 0
        text = ""
        if not (request.tool_choice == "required" and job.tools):
            text, produced, wants_tool = text_phase(self._llm, tokens, job, first_at,
                                                    min(job.max_tokens, self._room(tokens)),
                                                    self._sample_args())
            if job.stop.is_set() or not wants_tool:
                self._finish(job, started, first_at, tokens, cached, produced, "stop")
                return
            tool_prompt = prompt + text + TOOL_OPEN + "\n"
        else:
            tool_prompt = prompt
        call, used = self._tool_round(self._tokenize(tool_prompt), job, first_at)
        produced += used
        if call is not None:
            job.emit("event", ToolCallChunk(call))
        self._finish(job, started, first_at, tokens, cached, produced,
                     "tool_calls" if call is not None else "stop")

    def _finish(self, job: Job, started: float, first_at: list[float], tokens: list[int],
                cached: int, produced: int, reason: str) -> None:
        now = time.perf_counter()
        ttft = ((first_at[0] if first_at else now) - started) * 1000
        cached = min(cached, len(tokens) - 1) if tokens else 0  # the last is always re-run
        stats = LocalStats(len(tokens), cached, ttft, (now - started) * 1000, produced)
        self.last_stats = stats
        self.counters.add_round(stats)
        log.debug("local round: %d prompt tokens (%d cached), first token %.0f ms, %d tokens "
                  "in %.0f ms", len(tokens), cached, ttft, produced, (now - started) * 1000)
        if not job.stop.is_set():
            job.emit("event", StreamDone(finish_reason=reason, prompt_tokens=len(tokens),
                                         cached_tokens=cached, output_tokens=produced))

    def _sample_args(self) -> dict[str, Any]:
        s = self.sampling
        return {"temp": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p,
                "repeat_penalty": s.repeat_penalty}

    def _room(self, tokens: list[int]) -> int:
        """How many tokens can still be generated after `tokens` without filling the context."""
        return self.settings.context_tokens - len(tokens) - 1

    def _tool_round(self, tokens: list[int], job: Job,
                    first_at: list[float]) -> tuple[ToolCall | None, int]:
        limit = min(_MAX_TOOL_TOKENS, self._room(tokens))
        if limit < _MIN_TOOL_ROOM:
            log.warning("no room left in the context for a tool call (%d tokens)", limit)
            return None, 0
        return tool_phase(self._llm, tokens, job, first_at, limit, self._grammar(job.tools),
                          self._sample_args())

    def _grammar(self, tools: tuple[ToolSpec, ...]) -> Any:
        from llama_cpp import LlamaGrammar

        schema = json.dumps(tool_call_schema(tools), sort_keys=True)
        grammar = self._grammars.get(schema)
        if grammar is None:
            grammar = LlamaGrammar.from_json_schema(schema, verbose=False)
            self._grammars[schema] = grammar
        return grammar

    # -- warm-up and prefill ----------------------------------------------------------------

    def static_prefix(self, system_static: str, tools: Sequence[ToolSpec] = ()) -> str:
        """The rendered start that every prompt with this static prompt and tools shares."""
        marker = "\x00END-OF-STATIC\x00"
        rendered = self._render_template(
            [{"role": "system", "content": static_part(system_static, tools) + marker}], False)
        return rendered[:rendered.index(marker)] if marker in rendered else ""

    def static_tokens(self, system_static: str, tools: Sequence[ToolSpec] = ()) -> int:
        """Tokens of the shared static start (what `appliance doctor` checks)."""
        return len(self._tokenize(self.static_prefix(system_static, tools)))

    def check_static(self, system_static: str, tools: Sequence[ToolSpec] = ()) -> str | None:
        """None, or the warning that the static prompt takes more than half the context."""
        return static_prompt_check(self.static_tokens(system_static, tools),
                                   self.settings.context_tokens)

    async def warm(self, system_static: str,
                   tools: tuple[ToolSpec, ...] = ()) -> LocalStats | None:
        """Evaluate the static start of every prompt now (with the tools of the channel that
        matters most, calls), so no caller waits for it later."""
        prefix = self.static_prefix(system_static, tools)
        stats = await self._evaluate_in_worker(prefix, self.settings.threads, "")
        if stats is not None:
            self.warm_stats = stats
            log.info("local model warmed: %d static prompt tokens in %.0f ms",
                     stats.prompt_tokens, stats.total_ms)
            problem = static_prompt_check(stats.prompt_tokens, self.settings.context_tokens)
            if problem:
                log.warning("%s", problem)
        return stats

    async def prefill(self, request: ChatRequest, whole: bool = False) -> LocalStats | None:
        """Evaluate a prompt ahead of time, while the model is idle: the conversation so far
        (the next turn then pays only for its new message), or with `whole` the full prompt of
        a turn Gemini is answering (a failover then starts generating at once).
        Gives way to any generation that is waiting (returns None then); one CPU thread."""
        if self._closed:
            return None
        try:
            prompt, _ = self._tokens_for(request) if whole else (
                self.render(request, generation=False), None)
        except ModelError:
            return None
        return await self._evaluate_in_worker(prompt, 1, request.session)

    async def _evaluate_in_worker(self, prompt: str, threads: int,
                                  session: str) -> LocalStats | None:
        if self._closed:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._evaluate, prompt, threads,
                                          session)

    def _evaluate(self, prompt: str, threads: int, session: str,
                  chunk: int = 8) -> LocalStats | None:
        """Worker thread: put `prompt` in the KV cache, a few tokens at a time, reusing the
        prefix already there; stops early when a generation is waiting. A background prefill
        uses one thread, so speech recognition and synthesis keep a core on a 2-core box."""
        with self._lock:
            self.sessions.activate(session)
            self._set_threads(min(threads, decode_threads(threads)), threads)
            try:
                return self._evaluate_locked(prompt, chunk)
            finally:
                self._set_threads(decode_threads(self.settings.threads), self.settings.threads)

    def _set_threads(self, decode: int, batch: int) -> None:
        import llama_cpp

        llama_cpp.llama_set_n_threads(self._llm._ctx.ctx, decode, batch)

    def _evaluate_locked(self, prompt: str, chunk: int) -> LocalStats | None:
        started = time.perf_counter()
        tokens = self._tokenize(prompt)[: self.settings.context_tokens - _CONTEXT_MARGIN]
        cached, done = prefill_phase(self._llm, tokens, chunk,
                                     lambda: bool(self._waiting or self._closed))
        self.counters.add_prefill(done - cached)
        if done < len(tokens):
            return None
        elapsed = (time.perf_counter() - started) * 1000
        return LocalStats(len(tokens), cached, elapsed, elapsed, 0)
