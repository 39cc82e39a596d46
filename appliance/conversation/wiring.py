"""Build the conversation engine at start-up: local model, Gemini, knowledge base, tools.

The local model is loaded now, not at the first failure, and its static prompt evaluated so
the first offline turn pays only for its own tokens. The knowledge base is brought in line with
kb/ (unchanged files are skipped by content hash) before the server says it is ready.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..actions.wiring import register_actions
from ..kb.embed import Embedder
from ..kb.index import Indexer, KbError
from ..kb.search import KnowledgeBase
from ..llm.failover import ChatModels
from ..llm.local import LocalModel
from .engine import Engine, EngineOptions
from .tools import ToolRegistry

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)


async def build_engine(rt: "Runtime") -> None:
    s = rt.settings
    rt.local_llm = await rt.load("local_llm", lambda: LocalModel.load(s.local_llm),
                                 needed_for_calls=False, ref=s.local_llm.model)
    # One thread: a short query embeds faster on one core than split over two (6 vs 9 ms).
    rt.embedder = await rt.load("embedding", lambda: Embedder(s.kb.embedding_model.path,
                                                              threads=1),
                                needed_for_calls=False, ref=s.kb.embedding_model)
    if rt.db is None:
        return
    rt.kb = KnowledgeBase.from_settings(rt.db, rt.embedder, s.kb)
    await _index(rt)
    models = ChatModels.from_settings(s, local=rt.local_llm)
    if models.gemini is None and models.local is None:
        log.error("no language model: set GEMINI_API_KEY or download the local model")
        return
    tools = ToolRegistry.default()
    register_actions(rt, tools)        # appointments, messages, follow-ups, hand-over
    # Keeping the local model's KV cache on the live conversation makes a failover nearly free
    # (6 ms instead of 2.7 s) but costs a core on every turn; on 2 cores that doubled the cloud
    # turn_latency (bench/results/RESULTS.md: median 3.3 s with it, 1.5 s without). The cloud
    # path is the common one, so prefill only when the local model is the one answering.
    options = EngineOptions(prefill_local=models.gemini is None)
    rt.engine = Engine(s, rt.db, models, tools, kb=rt.kb, options=options)
    await rt.engine.start()
    rt._closers.append(rt.engine.close)


async def _index(rt: "Runtime") -> None:
    indexer = Indexer(rt.db, rt.embedder)
    try:
        report = await asyncio.to_thread(indexer.ingest, rt.settings.kb.directory)
    except KbError as exc:
        log.warning("knowledge base not indexed: %s", exc)
        return
    log.info("knowledge base: %d added, %d updated, %d removed", len(report.added),
             len(report.updated), len(report.removed))
