"""Builder of the conversation engine, called by appliance.compose: local model, embedding
model, knowledge base, Gemini, and the tool registry the caller passes in (actions included).

The local model is loaded now, not at the first failure, and its static prompt evaluated so
the first offline turn pays only for its own tokens. The knowledge base is brought in line with
kb/ (unchanged files are skipped by content hash) before the server says it is ready.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..config import Settings
from ..kb.embed import Embedder
from ..kb.index import Indexer, IngestReport, ingest_in_background
from ..kb.search import KnowledgeBase
from ..llm.failover import ChatModels
from ..llm.local import LocalModel
from ..runtime import Runtime
from ..store.db import Database
from .engine import Engine, EngineOptions
from .tools import ToolRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Knowledge:
    local_llm: LocalModel | None
    embedder: Embedder | None
    kb: KnowledgeBase | None


async def load_knowledge(rt: Runtime, s: Settings, db: Database | None) -> Knowledge:
    local = await rt.load("local_llm", lambda: LocalModel.load(s.local_llm),
                          needed_for_calls=False, ref=s.local_llm.model)
    # One thread: a short query embeds faster on one core than split over two (6 vs 9 ms).
    embedder = await rt.load("embedding", lambda: Embedder(s.kb.embedding_model.path, threads=1),
                             needed_for_calls=False, ref=s.kb.embedding_model)
    if db is None:
        return Knowledge(local, embedder, None)
    kb = KnowledgeBase.from_settings(db, embedder, s.kb)
    await _index(db, embedder, s)
    await asyncio.to_thread(kb.load_vectors)
    return Knowledge(local, embedder, kb)


async def build_engine(rt: Runtime, s: Settings, db: Database | None, knowledge: Knowledge,
                       tools: ToolRegistry) -> Engine | None:
    if db is None:
        return None
    models = ChatModels.from_settings(s, local=knowledge.local_llm)
    if models.gemini is None and models.local is None:
        log.error("no language model: set GEMINI_API_KEY or download the local model")
        return None
    # Keeping the local model's KV cache on the live conversation makes a failover nearly free
    # (6 ms instead of 2.7 s) but costs a core on every turn; on 2 cores that doubled the cloud
    # turn_latency (bench/results/RESULTS.md: median 3.3 s with it, 1.5 s without). The cloud
    # path is the common one, so prefill only when the local model is the one answering.
    options = EngineOptions(prefill_local=models.gemini is None)
    engine = Engine(s, db, models, tools, kb=knowledge.kb, options=options)
    await engine.start()
    rt.add_closer(engine.close)
    return engine


def index_in_background(db: Database, embedder: Embedder | None, s: Settings
                        ) -> "asyncio.Task[IngestReport | None]":
    """Bring the KB in line with kb/ in a worker thread; searches keep working meanwhile (each
    file is replaced in one transaction). For a server that opens its port first."""
    return ingest_in_background(Indexer(db, embedder), s.kb.directory)


async def _index(db: Database, embedder: Embedder | None, s: Settings) -> None:
    await index_in_background(db, embedder, s)   # logs its outcome; None when not indexed
