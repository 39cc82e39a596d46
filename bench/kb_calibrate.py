"""Fit the no-answer model (appliance/kb/confidence.py) on a dev business, check the others.

    python -m bench.kb_calibrate [--dev dental] [--fit]

Ingests every business of tests/data/kb_businesses with the real all-MiniLM-L6-v2, runs each
question, and records the features of its best candidates with its label: 1 when the question
is answerable and an expected passage is in the ranking's top 3, 0 when the files cannot answer
it (answerable questions the ranking misses are left out: accepting them helps nobody). With
--fit, a logistic regression (L2, Newton steps) is fitted on the dev business only and printed
as the Logistic(...) to paste into calibration.py; the threshold is set just above the dev
out-of-KB question that scores highest. Every business is then scored with it, dev and
held-out reported apart.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from appliance.kb.confidence import FEATURE_NAMES, Features, Logistic
from appliance.kb.embed import Embedder
from appliance.kb.evaluate import load_questions
from appliance.kb.index import Indexer
from appliance.kb.search import KnowledgeBase
from appliance.store.db import Database
from tests.support.kb import BUSINESSES, NAMES, SPLIT, embedding_model_path

Sample = tuple[str, Features, int]      # question, features, label


def collect(name: str, model: Path, workdir: Path) -> list[Sample]:
    db = Database.open_sync(workdir / f"{name}.db")
    embedder = Embedder(model, threads=2)
    try:
        Indexer(db, embedder).ingest(BUSINESSES / name / "docs")
        kb = KnowledgeBase(db, embedder)
        # a model that always answers: every question returns its ranking and its features
        kb.calibration = replace(kb.calibration,
                                 abstain=Logistic((0.0,) * len(FEATURE_NAMES), bias=50.0))
        out = []
        for q in load_questions(BUSINESSES / name / "questions.jsonl"):
            hits, found = kb.search_with_features(q.question, k=3)
            if found is None:
                found = Features(*([0.0] * len(FEATURE_NAMES)))
            if not q.answerable:
                out.append((q.question, found, 0))
            elif any(e.matches(h) for e in q.expected or () for h in hits):
                out.append((q.question, found, 1))
        return out
    finally:
        embedder.close()
        db.close()


def fit(samples: list[Sample], l2: float = 0.5) -> tuple[np.ndarray, float]:
    x = np.array([f.values() for _, f, _ in samples], dtype=np.float64)
    y = np.array([label for _, _, label in samples], dtype=np.float64)
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    penalty = np.eye(xb.shape[1]) * l2
    penalty[-1, -1] = 0.0                      # the bias is not penalised
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-xb @ w))
        gradient = xb.T @ (p - y) + penalty @ w
        hessian = xb.T @ (xb * (p * (1 - p))[:, None]) + penalty
        w -= np.linalg.solve(hessian, gradient)
    return w[:-1], float(w[-1])


def report(name: str, samples: list[Sample], model: Logistic) -> str:
    positives = [(q, model.probability(f)) for q, f, y in samples if y]
    negatives = [(q, model.probability(f)) for q, f, y in samples if not y]
    kept = sum(p >= model.threshold for _, p in positives)
    leaks = [(q, round(p, 3)) for q, p in negatives if p >= model.threshold]
    lost = [(q, round(p, 3)) for q, p in positives if p < model.threshold]
    return (f"{name} ({SPLIT[name]}): ranked answers kept {kept}/{len(positives)}, "
            f"out-of-KB refused {len(negatives) - len(leaks)}/{len(negatives)}\n"
            f"  refused answerable: {lost}\n  leaked: {leaks}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dev", default="dental")
    parser.add_argument("--fit", action="store_true")
    args = parser.parse_args()
    model_path = embedding_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        data = {name: collect(name, model_path, Path(tmp)) for name in NAMES}
    from appliance.kb.calibration import calibration_for
    current = calibration_for("all-MiniLM-L6-v2").abstain
    if args.fit or current is None:
        weights, bias = fit(data[args.dev])
        trial = Logistic(tuple(weights), bias)
        top_negative = max(trial.probability(f) for _, f, y in data[args.dev] if not y)
        current = Logistic(tuple(round(float(w), 3) for w in weights), round(bias, 3),
                           threshold=round(min(0.95, top_negative + 0.02), 3))
        print("features:", FEATURE_NAMES)
        print(f"fitted on {args.dev}: {current!r}")
    for name in NAMES:
        print(report(name, data[name], current))


if __name__ == "__main__":
    main()
