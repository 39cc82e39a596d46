"""`appliance kb ingest [dir]`, `kb search "question"`, `kb stats`, `kb eval QUESTIONS.jsonl`.

None of them needs the Twilio settings (`needs_twilio=False`): they work on a box not yet
reachable from the internet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

from ..config import Settings
from ..store.db import Database
from .embed import Embedder, EmbeddingError
from .evaluate import K, EvalFileError, evaluate, format_result, load_questions
from .index import Indexer, IngestProgress, IngestReport, KbError
from .stats import read_stats
from .search import MODES, KnowledgeBase


def register(subparsers: argparse._SubParsersAction) -> None:
    common = getattr(subparsers, "common", None)
    parents = [common] if common is not None else []
    kb = subparsers.add_parser("kb", parents=parents, help="the knowledge base: ingest, search")
    sub = kb.add_subparsers(dest="kb_command", required=True, metavar="ACTION")

    ingest = sub.add_parser("ingest", parents=parents,
                            help="index the knowledge-base folder (only what changed)")
    ingest.add_argument("directory", nargs="?", type=Path,
                        help="folder to index (default: [kb] directory)")
    ingest.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1),
                        help="CPU threads for embedding (default: %(default)s)")
    ingest.set_defaults(handler=run_ingest)

    search = sub.add_parser("search", parents=parents, help="ranked passages for a question")
    search.add_argument("question")
    search.add_argument("-k", type=int, default=None, help="how many hits (default: [kb] top_k)")
    search.add_argument("--mode", choices=MODES, default="hybrid",
                        help="retrievers to use (default: hybrid)")
    search.add_argument("--json", action="store_true", help="print hits as JSON lines")
    search.set_defaults(handler=run_search)

    stats = sub.add_parser("stats", parents=parents, help="what the knowledge base holds")
    stats.set_defaults(handler=run_stats)

    evaluate = sub.add_parser("eval", parents=parents,
                              help="check the knowledge base against your own questions")
    evaluate.add_argument("questions", type=Path, help="JSON lines: {\"question\": ..., "
                          "\"expected\": [{\"file\": ..., \"row\"|\"heading\": ...}] or null}")
    evaluate.add_argument("-k", type=int, default=K, help="hits that count (default: %(default)s)")
    evaluate.add_argument("--mode", choices=MODES, default="hybrid",
                          help="retrievers to use (default: hybrid)")
    evaluate.set_defaults(handler=run_eval)
    for parser in (ingest, search, stats, evaluate):
        parser.set_defaults(needs_twilio=False)


@contextmanager
def _open(settings: Settings, threads: int = 2,
          err: TextIO = sys.stderr) -> Iterator[tuple[Database, Embedder | None]]:
    db = Database.open_sync(settings.storage.database)
    embedder = None
    ref = settings.kb.embedding_model
    try:
        if ref.present:
            embedder = Embedder(ref.path, threads=threads)
        else:
            print(f"warning: embedding model {ref.path} is not downloaded ({ref.setting}); "
                  "keyword search only. `appliance models download` fetches it.", file=err)
        yield db, embedder
    finally:
        if embedder is not None:
            embedder.close()
        db.close()


class ProgressBar:
    """One self-rewriting line on a terminal; silent when stderr is not a terminal."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.enabled = stream.isatty()

    def __call__(self, event: IngestProgress) -> None:
        if not self.enabled or event.files_total == 0:
            return
        filled = self.width * event.files_done // event.files_total
        bar = "#" * filled + "-" * (self.width - filled)
        name = event.path if len(event.path) <= 40 else "..." + event.path[-37:]
        inner = (f" {event.passages_done}/{event.passages_total} passages"
                 if event.passages_total else "")
        self.stream.write(f"\r[{bar}] {event.files_done}/{event.files_total} "
                          f"{name + inner:<60}")
        if not event.path:
            self.stream.write("\n")
        self.stream.flush()


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    directory = args.directory or settings.kb.directory
    try:
        with _open(settings, threads=args.threads) as (db, embedder):
            report = Indexer(db, embedder).ingest(directory, progress=ProgressBar())
    except (KbError, EmbeddingError) as exc:
        print(f"appliance kb ingest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: files finished so far are indexed, the others keep their "
              "previous version; run it again to finish", file=sys.stderr)
        return 130
    print(format_report(report, directory))
    return 0


def format_report(report: IngestReport, directory: Path) -> str:
    lines = [f"knowledge base {directory}: {len(report.added)} added, {len(report.updated)} "
             f"updated, {len(report.removed)} removed, {len(report.unchanged)} unchanged, "
             f"{len(report.skipped)} skipped ({report.seconds:.1f} s)"]
    for label, names in (("added", report.added), ("updated", report.updated),
                         ("removed", report.removed)):
        lines.extend(f"  {label:9} {name}" for name in names)
    lines.extend(f"  skipped   {name}: {reason}" for name, reason in report.skipped)
    problems = [w for w in report.warnings if w.path not in {n for n, _ in report.skipped}]
    if problems:
        lines.append("warnings:")
        lines.extend(f"  {w}" for w in problems)
    embedded = (f"{report.passages_embedded} embedded, {report.passages_reused} reused"
                if report.vectors else "no vectors (embedding model missing)")
    lines.append(f"passages: {report.passages_total} in the index; {embedded}"
                 + ("; embedding model changed, everything re-embedded"
                    if report.model_changed else ""))
    return "\n".join(lines)


def run_search(args: argparse.Namespace, settings: Settings) -> int:
    with _open(settings) as (db, embedder):
        kb = KnowledgeBase.from_settings(db, embedder, settings.kb)
        started = time.perf_counter()
        hits = kb.search(args.question, k=args.k, mode=args.mode)
        elapsed = (time.perf_counter() - started) * 1000
        floor = (f"similarity >= {kb.min_similarity:.2f} or word coverage >= "
                 f"{kb.min_coverage:.2f}")
    if args.json:
        for hit in hits:
            print(json.dumps({"source": hit.source, "locator": hit.locator, "row": hit.row,
                              "heading": hit.heading, "score": round(hit.score, 5),
                              "rerank_score": (None if hit.rerank_score is None
                                               else round(hit.rerank_score, 4)),
                              "similarity": hit.similarity, "coverage": round(hit.coverage, 3),
                              "ranks": hit.ranks, "title": hit.title, "text": hit.text},
                             ensure_ascii=False))
        return 0
    if not hits:
        print(f"no answer in the knowledge base (nothing above the floor: {floor}) "
              f"[{elapsed:.1f} ms]")
        return 0
    for number, hit in enumerate(hits, 1):
        sim = "  -  " if hit.similarity is None else f"{hit.similarity:.2f}"
        found = " ".join(f"{name}#{rank}" for name, rank in hit.ranks.items())
        rerank = "" if hit.rerank_score is None else f"  rerank {hit.rerank_score:.2f}"
        print(f"{number}. score {hit.score:.4f}  similarity {sim}  words {hit.coverage:.2f}"
              f"{rerank}  [{found}]  {hit.citation}")
        body = " ".join(hit.text.split())
        print(f"   {hit.title}: {body[:200]}{'...' if len(body) > 200 else ''}")
    print(f"({len(hits)} hits, {elapsed:.1f} ms; floor: {floor})")
    return 0


def run_stats(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.open_sync(settings.storage.database)
    try:
        stats = db.read_sync(read_stats)
        size = settings.storage.database.stat().st_size
    finally:
        db.close()
    print(f"database     {settings.storage.database} ({size / 1e6:.1f} MB)")
    print(f"folder       {stats.directory or settings.kb.directory}")
    print(f"last ingest  {stats.last_ingest_at or 'never'}")
    print(f"model        {stats.embedding_model or 'none'}"
          + (f" ({stats.embedding_dim} dimensions)" if stats.embedding_dim else ""))
    configured = settings.kb.embedding_model.path
    if stats.embedding_model and configured.name not in stats.embedding_model:
        print(f"             configured model is {configured.name}: run `appliance kb ingest`")
    print(f"files        {len(stats.files)}")
    print(f"passages     {stats.passages} ({stats.vectors} with vectors)")
    for f in stats.files:
        note = f", {f.warnings} warnings" if f.warnings else ""
        vec = "" if f.vectors else ", no vectors"
        print(f"  {f.path:40} {f.kind:8} {f.passages:5} passages{note}{vec}")
    return 0


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    try:
        questions = load_questions(args.questions)
    except EvalFileError as exc:
        print(f"appliance kb eval: {exc}", file=sys.stderr)
        return 2
    with _open(settings) as (db, embedder):
        if not db.read_sync(read_stats).passages:
            print("appliance kb eval: the knowledge base is empty; run `appliance kb ingest` "
                  "first", file=sys.stderr)
            return 2
        kb = KnowledgeBase.from_settings(db, embedder, settings.kb)
        result = evaluate(lambda q, k: kb.search(q, k=k, mode=args.mode), questions, args.k)
    print(f"{len(questions)} questions from {args.questions} ({args.mode})")
    print(format_result(result))
    return 0
