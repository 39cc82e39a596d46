"""Per-conversation KV cache for the one llama.cpp context the local model owns.

Several calls and chats share one `Llama` (one context, one sequence). Between two turns of a
conversation the context usually still holds that conversation, and `Llama.generate` reuses
the longest common token prefix by itself. When another conversation used the context in
between, its tokens would be thrown away and the first one's whole history re-evaluated.
`SessionStates` keeps, per conversation key, a snapshot of sequence 0 (the KV cells, through
`llama_state_seq_get_data`, plus the token ids they hold), taken when a different
conversation takes the context, and restores it when the conversation comes back.

Why not `Llama.save_state()`: it also copies the logits buffer (n_batch x n_vocab floats,
~300 MB for Qwen2.5's 151,936-token vocabulary), so one snapshot would cost more than the
model. A sequence snapshot holds only the KV of the tokens in the cache (Qwen2.5-0.5B:
~12 KB per token, a 1,000-token conversation ~12 MB, copied in a few milliseconds).

Correctness never depends on the key: after a restore the prompt is still compared token by
token with what the cache holds, and only the common prefix is kept. The key only decides
which snapshot is worth restoring. Snapshots are evicted least recently used first, by count
and by total bytes. Not thread-safe: used by the model's worker thread under its lock.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Snapshot:
    data: Any                  # ctypes uint8 array
    size: int
    tokens: np.ndarray         # the token ids the KV cells belong to


@dataclass
class CacheCounters:
    """Totals since start-up, for /healthz, tests and benchmarks."""

    saves: int = 0
    restores: int = 0
    evictions: int = 0
    save_ms: float = 0.0
    restore_ms: float = 0.0
    bytes_held: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {"saves": self.saves, "restores": self.restores, "evictions": self.evictions,
                "save_ms": round(self.save_ms, 1), "restore_ms": round(self.restore_ms, 1),
                "bytes_held": self.bytes_held}


class SessionStates:
    def __init__(self, llama: Any, max_sessions: int = 8, max_bytes: int = 512 << 20) -> None:
        self._llm = llama
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self.owner = ""                 # whose tokens the context holds now ("" nobody's)
        self._saved: OrderedDict[str, _Snapshot] = OrderedDict()
        self.counters = CacheCounters()

    def __contains__(self, key: str) -> bool:
        return key in self._saved

    def activate(self, key: str) -> bool:
        """Make the context hold `key`'s conversation as far as it was evaluated. Returns True
        when a snapshot was restored. An empty key (a request without a conversation) keeps
        whatever is there; prefix matching still reuses the shared static prompt."""
        if not key or key == self.owner:
            return False
        if self.owner and self._llm.n_tokens > 0:
            self._save(self.owner)
        self.owner = key
        snapshot = self._saved.pop(key, None)
        if snapshot is None:
            return False
        self.counters.bytes_held -= snapshot.size
        return self._restore(snapshot)

    def forget(self, key: str) -> None:
        snapshot = self._saved.pop(key, None)
        if snapshot is not None:
            self.counters.bytes_held -= snapshot.size
        if self.owner == key:
            self.owner = ""

    def _save(self, key: str) -> None:
        import llama_cpp

        started = time.perf_counter()
        ctx = self._llm._ctx.ctx
        size = int(llama_cpp.llama_state_seq_get_size(ctx, 0))
        if size <= 0 or size > self.max_bytes:
            return
        buffer = (ctypes.c_uint8 * size)()
        written = int(llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0))
        if written <= 0:
            return
        tokens = np.array(self._llm.input_ids[: self._llm.n_tokens], dtype=np.intc)
        old = self._saved.pop(key, None)
        if old is not None:
            self.counters.bytes_held -= old.size
        self._saved[key] = _Snapshot(buffer, written, tokens)
        self.counters.bytes_held += written
        self.counters.saves += 1
        self.counters.save_ms += (time.perf_counter() - started) * 1000
        self._evict()

    def _evict(self) -> None:
        while self._saved and (len(self._saved) > self.max_sessions
                               or self.counters.bytes_held > self.max_bytes):
            _, snapshot = self._saved.popitem(last=False)
            self.counters.bytes_held -= snapshot.size
            self.counters.evictions += 1

    def _restore(self, snapshot: _Snapshot) -> bool:
        import llama_cpp

        started = time.perf_counter()
        llm = self._llm
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        if int(llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, snapshot.data, snapshot.size,
                                                  0)) == 0:
            log.warning("restoring a KV snapshot failed; the conversation is re-evaluated")
            llm.reset()
            return False
        n = len(snapshot.tokens)
        llm.input_ids[:n] = snapshot.tokens
        llm.n_tokens = n
        llm._requires_eval = True     # the logits in the buffer are another conversation's
        self.counters.restores += 1
        self.counters.restore_ms += (time.perf_counter() - started) * 1000
        return True


def common_prefix(previous: Sequence[int], tokens: Sequence[int]) -> int:
    n = 0
    for a, b in zip(previous, tokens):
        if a != b:
            break
        n += 1
    return n
