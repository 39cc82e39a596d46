"""`appliance kb eval`'s pieces (questions file, scoring) and query expansion (vocab.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from appliance.kb import vocab
from appliance.kb.evaluate import (
    EvalFileError,
    Expected,
    evaluate,
    format_result,
    load_questions,
)
from appliance.kb.search import Hit


def hit(source: str, row: int | None = None, heading: str | None = None) -> Hit:
    return Hit(passage_id=1, source=source, locator=f"row {row}" if row else heading or "",
               title="", text="", row=row, heading=heading, line_start=1, line_end=1,
               fields=None, score=0.1, similarity=0.5, coverage=0.5)


def test_questions_file_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "q.jsonl"
    good.write_text('{"question": "price?", "expected": [{"file": "p.csv", "row": 2}]}\n'
                    "\n# a comment\n"
                    '{"question": "botox?", "expected": null, "language": "en"}\n'
                    '{"question": "hours", "expected": [{"file": "h.md", "heading": "A > B"}]}\n',
                    encoding="utf-8")
    first, second, third = load_questions(good)
    assert first.expected == (Expected("p.csv", 2),) and first.line == 1
    assert not second.answerable and second.language == "en" and second.line == 4
    assert third.answered_by(hit("h.md", heading="A > B"))
    assert not third.answered_by(hit("h.md", heading="A"))
    for body, words in (("not json\n", "q.jsonl:1: not JSON"),
                        ('{"expected": null}\n', 'needs a "question"'),
                        ('{"question": "x", "expected": []}\n', "non-empty list or null"),
                        ('{"question": "x", "expected": [{"row": 2}]}\n', 'needs a "file"'),
                        ("", "no questions")):
        bad = tmp_path / "q.jsonl"
        bad.write_text(body, encoding="utf-8")
        with pytest.raises(EvalFileError, match=words):
            load_questions(bad)
    with pytest.raises(EvalFileError, match="cannot be read"):
        load_questions(tmp_path / "missing.jsonl")


def test_evaluate_counts_recall_abstention_and_misses(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"question": "a", "expected": [{"file": "p.csv", "row": 2}]}\n'
        '{"question": "b", "expected": [{"file": "p.csv", "row": 3}]}\n'
        '{"question": "c", "expected": [{"file": "h.md"}]}\n'
        '{"question": "d", "expected": null}\n'
        '{"question": "e", "expected": null}\n', encoding="utf-8")
    answers = {"a": [hit("x.md", heading="X"), hit("p.csv", 2)], "b": [], "c": [hit("h.md", 9)],
               "d": [], "e": [hit("p.csv", 5)]}
    asked: list[tuple[str, int]] = []

    def search(q: str, k: int) -> Sequence[Hit]:
        asked.append((q, k))
        return answers[q]

    result = evaluate(search, load_questions(path), k=3)
    assert asked[0] == ("a", 3)
    assert result.recall == pytest.approx(2 / 3) and result.abstention == 0.5
    assert [q.question for q in result.refused] == ["b"]
    text = format_result(result)
    assert "recall@3: 66.7% (2/3 answerable questions; 1 of the misses returned nothing)" in text
    assert "abstention: 50.0% (1/2" in text
    assert "missed (line 2): 'b': got nothing; expected p.csv row 3" in text
    assert "answered (line 5) but should not: 'e': p.csv row 5" in text


class WordEmbedder:
    """Vectors chosen by hand: "kids" sits next to "children", "botox" next to nothing."""

    name, dimension = "fake-minilm", 3
    identity = "fake-minilm|f.gguf|0|3"
    table = {"children": [1, 0, 0], "kids": [0.9, 0.1, 0], "price": [0, 1, 0],
             "cost": [0, 0.8, 0.6], "botox": [0, 0, 1], "дети": [1, 0, 0]}

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_passages([text])[0]

    def embed_passages(self, texts: Sequence[str], batch: int = 16) -> np.ndarray:
        rows = np.array([self.table.get(t, [0.5, 0.5, 0.5]) for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_vocabulary_expands_unknown_words_to_close_kb_words() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE kb_meta (key TEXT PRIMARY KEY, value TEXT)")
    embedder = WordEmbedder()
    words = ["children", "price", "дети"]
    drop, add, vectors = [], [w for w in words if vocab.expandable(w, True)], None
    vectors = embedder.embed_passages(add)
    vocab.write(conn, embedder.identity, drop, add, vectors)
    assert add == ["children", "price"]             # English-only model: no Cyrillic words
    expander = vocab.Vocabulary(floor=0.7, latin_only=True)
    got = expander.expand(conn, embedder, ["kids", "cost", "botox", "ab"])
    assert list(got) == ["kids", "cost"]            # "botox" has no close word, "ab" too short
    assert got["kids"][0][0] == "children" and got["kids"][0][1] > 0.9
    assert got["cost"][0][0] == "price"
    assert vocab.Vocabulary(floor=0.9, latin_only=True).expand(
        conn, embedder, ["cost"]) == {}              # the floor decides
    assert vocab.in_model_script("how much?", True)
    assert not vocab.in_model_script("сколько стоит?", True)
    assert vocab.in_model_script("сколько стоит?", False)
