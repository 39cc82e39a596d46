"""Keep the process's native heap from creeping up under many worker threads.

glibc gives every thread that allocates its own malloc arena (up to 8 per core). The model
threads (Whisper, Piper, smart-turn, the VAD, llama.cpp) each allocate and free buffers of
changing sizes, and memory freed in one arena is not reused by another: in a 30-minute soak
(4 calls at once plus a message every 3 s) RSS rose ~4-5 MB a minute without any Python-level
growth (tracemalloc: +14 MB, most of it a bounded KV-cache). Two arenas took the slope to
~1 MB a minute with the same throughput (bench/results/reliability.md). The limit is set as
early as possible, before the model threads start; ``MALLOC_ARENA_MAX`` in the environment, if
set, wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8          # glibc's mallopt parameter number
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas; False where that is not glibc (or the environment decides)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    if not ok:
        logger.debug("mallopt(M_ARENA_MAX, %s) refused", arenas)
    return ok
