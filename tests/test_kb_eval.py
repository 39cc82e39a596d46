"""Retrieval quality on the sample business (kb/) with the real all-MiniLM-L6-v2 model.

tests/kb_eval.jsonl holds questions (English, Hebrew, Russian; plain, exact names and SKUs,
misspellings, and questions the knowledge base cannot answer) with the passages that answer
them. Reported: recall@3 per retrieval mode, overall and per language and kind, and what the
no-answer questions return. Asserted: hybrid beats BM25 alone and vector alone overall, and
every no-answer question returns nothing.

all-MiniLM is English-only, so Hebrew and Russian questions rely on the word retrievers; the
shipped multilingual model is expected to do better on them.

Run ``python -m tests.test_kb_eval [MODEL.gguf]`` to print the report.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.kb.embed import Embedder
from appliance.kb.index import Indexer
from appliance.kb.search import KnowledgeBase
from appliance.store.db import Database
from tests.support import kb as kb_support
from tests.support.kb import KB_DIR, Question, embedding_model_path, load_questions

REPORT_FILE = Path(__file__).resolve().parent / ".cache" / "kb_eval_report.md"
MODES = ("bm25", "trigram", "lexical", "vector", "hybrid")
K = 3

embedding_model = kb_support.embedding_model


@dataclass
class ModeResult:
    mode: str
    found: dict[str, bool]            # answerable question -> an expected source in the top K
    no_answer_hits: dict[str, list[str]]   # no-answer question -> citations returned
    # question -> (similarity, coverage) of the best correct hit (answerable questions) or the
    # highest of any hit (no-answer questions): what the floor has to separate.
    signals: dict[str, tuple[float | None, float]] = field(default_factory=dict)

    def recall(self, questions: list[Question], **where: str) -> float | None:
        chosen = [q for q in questions if q.expected is not None
                  and all(getattr(q, key) == value for key, value in where.items())]
        if not chosen:
            return None
        return sum(self.found[q.question] for q in chosen) / len(chosen)


def evaluate(kb: KnowledgeBase, questions: list[Question], mode: str) -> ModeResult:
    result = ModeResult(mode, {}, {})
    for q in questions:
        hits = kb.search(q.question, k=K, mode=mode)  # type: ignore[arg-type]
        if q.expected is None:
            result.no_answer_hits[q.question] = [h.citation for h in hits]
            if hits:
                sims = [h.similarity for h in hits if h.similarity is not None]
                result.signals[q.question] = (max(sims) if sims else None,
                                              max(h.coverage for h in hits))
        else:
            good = [h for h in hits if q.answered_by(h)]
            result.found[q.question] = bool(good)
            if good:
                result.signals[q.question] = (good[0].similarity, good[0].coverage)
    return result


def report(results: dict[str, ModeResult], questions: list[Question]) -> str:
    def pct(value: float | None) -> str:
        return "  -  " if value is None else f"{100 * value:5.1f}"

    answerable = [q for q in questions if q.expected is not None]
    languages = sorted({q.language for q in answerable})
    kinds = sorted({q.kind for q in answerable})
    counts = {f"lang={x}": sum(q.language == x for q in answerable) for x in languages}
    counts |= {f"kind={x}": sum(q.kind == x for q in answerable) for x in kinds}
    columns = ["all"] + list(counts)
    lines = [f"recall@{K} in % ({len(answerable)} answerable questions; "
             + ", ".join(f"{c} n={n}" for c, n in counts.items()) + ")", "",
             "| mode | " + " | ".join(columns) + " | no-answer questions with hits |",
             "|---" * (len(columns) + 2) + "|"]
    nones = [q for q in questions if q.expected is None]
    for mode, r in results.items():
        cells = [pct(r.recall(questions))]
        cells += [pct(r.recall(questions, language=x)) for x in languages]
        cells += [pct(r.recall(questions, kind=x)) for x in kinds]
        leaked = sum(bool(r.no_answer_hits[q.question]) for q in nones)
        leak_cell = "-" if mode.endswith("(no floor)") else f"{leaked}/{len(nones)}"
        lines.append(f"| {mode} | " + " | ".join(cells) + f" | {leak_cell} |")
    raw = results.get("hybrid (no floor)")
    if raw:
        def spread(values: list[float]) -> str:
            values = sorted(values)
            if not values:
                return "-"
            return (f"min {values[0]:.2f}, 10% {values[len(values) // 10]:.2f}, median "
                    f"{values[len(values) // 2]:.2f}, max {values[-1]:.2f}")

        answer = [raw.signals[q.question] for q in answerable if q.question in raw.signals]
        noise = [raw.signals[q.question] for q in nones if q.question in raw.signals]
        lines += ["", "floor calibration (hybrid without the floor; best correct hit of each "
                      "answerable question vs best hit of each no-answer question):",
                  "- similarity, answerable: " + spread([a for a, _ in answer if a is not None]),
                  "- similarity, no-answer:  " + spread([a for a, _ in noise if a is not None]),
                  "- coverage, answerable:   " + spread([b for _, b in answer]),
                  "- coverage, no-answer:    " + spread([b for _, b in noise])]
    hybrid = results.get("hybrid")
    if hybrid:
        missed = [q.question for q in answerable if not hybrid.found[q.question]]
        lines += ["", "hybrid misses: " + ("; ".join(missed) if missed else "none")]
        leaks = {q: h for q, h in hybrid.no_answer_hits.items() if h}
        lines += ["hybrid no-answer leaks: " + (json.dumps(leaks, ensure_ascii=False)
                                                 if leaks else "none")]
    return "\n".join(lines)


def run_eval(model: Path, workdir: Path) -> tuple[dict[str, ModeResult], list[Question]]:
    questions = load_questions()
    db = Database.open_sync(workdir / "eval.db")
    embedder = Embedder(model, threads=2)
    try:
        Indexer(db, embedder).ingest(KB_DIR)
        kb = KnowledgeBase(db, embedder)
        results = {mode: evaluate(kb, questions, mode) for mode in MODES}
        # The same retrievers without the no-answer floor: how well each one ranks.
        unfloored = KnowledgeBase(db, embedder, min_similarity=-1.0, min_coverage=0.0)
        for mode in MODES:
            results[f"{mode} (no floor)"] = evaluate(unfloored, questions, mode)
        return results, questions
    finally:
        embedder.close()
        db.close()


# ----------------------------------------------------------------------------------------------


def test_eval_file_points_at_real_passages(tmp_path: Path) -> None:
    """Every expected source exists in kb/ (a renamed heading must not silently lower recall)."""
    from appliance.kb.sources import parse_source

    passages = {}
    for path in KB_DIR.iterdir():
        parsed = parse_source(path.name, path.read_bytes())
        assert not parsed.warnings, parsed.warnings
        passages[path.name] = parsed.passages
    questions = load_questions()
    assert 30 <= len(questions) <= 60
    assert {q.language for q in questions} >= {"en", "he", "ru"}
    assert {q.kind for q in questions} >= {"plain", "name", "sku", "typo", "none"}
    for q in questions:
        for source in q.expected or ():
            candidates = passages[source["file"]]
            assert any(p.row == source.get("row", -1) or p.heading == source.get("heading")
                       for p in candidates), (q.question, source)


@pytest.fixture(scope="module")
def eval_results(embedding_model: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[dict[str, ModeResult], list[Question]]:
    results, questions = run_eval(embedding_model, tmp_path_factory.mktemp("kb-eval"))
    text = report(results, questions)
    REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
    REPORT_FILE.write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
    return results, questions


def test_hybrid_beats_each_retriever_alone(eval_results) -> None:
    results, questions = eval_results
    hybrid = results["hybrid"].recall(questions)
    for mode in ("bm25", "vector", "trigram", "lexical"):
        assert hybrid > results[mode].recall(questions), report(results, questions)


def test_hybrid_recall_is_useful(eval_results) -> None:
    results, questions = eval_results
    assert results["hybrid"].recall(questions) >= 0.9, report(results, questions)


def test_no_answer_questions_return_nothing(eval_results) -> None:
    results, questions = eval_results
    for mode in ("hybrid", "bm25", "vector"):
        leaks = {q: h for q, h in results[mode].no_answer_hits.items() if h}
        assert not leaks, (mode, leaks)


if __name__ == "__main__":
    import tempfile

    model_path = Path(sys.argv[1]) if len(sys.argv) > 1 else embedding_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        res, qs = run_eval(model_path, Path(tmp))
        print(report(res, qs))
