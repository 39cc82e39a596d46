"""Check the knowledge base against the owner's own questions: recall@k, abstention, misses.

A questions file has one JSON object per line::

    {"question": "how much is a cleaning", "expected": [{"file": "prices.csv", "row": 2}]}
    {"question": "do you do botox?", "expected": null}

``expected`` lists the passages that answer the question (a CSV row, or a Markdown heading path
as `appliance kb search` prints it); any one of them in the top k counts as found. ``null`` (or
leaving it out) means the files cannot answer it: the search must return nothing. Optional
``language`` and ``kind`` fields are reported per group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .search import Hit

K = 3


class EvalFileError(Exception):
    """The questions file cannot be read; the message names the line."""


@dataclass(frozen=True)
class Expected:
    file: str
    row: int | None = None
    heading: str | None = None

    def matches(self, hit: Hit) -> bool:
        if hit.source != self.file:
            return False
        if self.row is not None:
            return hit.row == self.row
        if self.heading is not None:
            return hit.heading == self.heading
        return True                         # the file alone: any passage of it


@dataclass(frozen=True)
class Question:
    question: str
    expected: tuple[Expected, ...] | None   # None: the knowledge base cannot answer it
    language: str = ""
    kind: str = ""
    line: int = 0

    @property
    def answerable(self) -> bool:
        return self.expected is not None

    def answered_by(self, hit: Hit) -> bool:
        return any(e.matches(hit) for e in self.expected or ())


def _expected(raw: object, where: str) -> tuple[Expected, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise EvalFileError(f"{where}: \"expected\" must be a non-empty list or null")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            raise EvalFileError(f"{where}: every expected passage needs a \"file\"")
        row, heading = item.get("row"), item.get("heading")
        if row is not None and not isinstance(row, int):
            raise EvalFileError(f"{where}: \"row\" must be a number")
        out.append(Expected(item["file"], row, heading if isinstance(heading, str) else None))
    return tuple(out)


def load_questions(path: Path) -> list[Question]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalFileError(f"{path}: cannot be read: {exc}") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalFileError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(raw, dict) or not str(raw.get("question", "")).strip():
            raise EvalFileError(f"{where}: needs a \"question\"")
        out.append(Question(str(raw["question"]), _expected(raw.get("expected"), where),
                            str(raw.get("language", "")), str(raw.get("kind", "")), number))
    if not out:
        raise EvalFileError(f"{path}: no questions")
    return out


@dataclass
class EvalResult:
    k: int
    found: list[Question] = field(default_factory=list)
    missed: list[tuple[Question, list[Hit]]] = field(default_factory=list)
    abstained: list[Question] = field(default_factory=list)
    leaked: list[tuple[Question, list[Hit]]] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        total = len(self.found) + len(self.missed)
        return len(self.found) / total if total else None

    @property
    def abstention(self) -> float | None:
        total = len(self.abstained) + len(self.leaked)
        return len(self.abstained) / total if total else None

    @property
    def refused(self) -> list[Question]:
        """Answerable questions that got no hit at all (the floor hid the answer)."""
        return [q for q, hits in self.missed if not hits]


Search = Callable[[str, int], Sequence[Hit]]


def evaluate(search: Search, questions: Sequence[Question], k: int = K) -> EvalResult:
    result = EvalResult(k)
    for q in questions:
        hits = list(search(q.question, k))
        if q.answerable:
            if any(q.answered_by(h) for h in hits[:k]):
                result.found.append(q)
            else:
                result.missed.append((q, hits))
        elif hits:
            result.leaked.append((q, hits))
        else:
            result.abstained.append(q)
    return result


def _where(expected: Expected) -> str:
    if expected.heading is not None:
        return f"{expected.file} {expected.heading}"
    return expected.file if expected.row is None else f"{expected.file} row {expected.row}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_result(result: EvalResult, details: bool = True) -> str:
    answerable = len(result.found) + len(result.missed)
    unanswerable = len(result.abstained) + len(result.leaked)
    lines = [(f"recall@{result.k}: {_pct(result.recall)} ({len(result.found)}/{answerable} "
              f"answerable questions; {len(result.refused)} of the misses returned nothing)"),
             (f"abstention: {_pct(result.abstention)} ({len(result.abstained)}/{unanswerable} "
              "questions the files cannot answer returned nothing)")]
    if not details:
        return "\n".join(lines)
    for q, hits in result.missed:
        got = ", ".join(h.citation for h in hits) or "nothing"
        want = "; ".join(_where(e) for e in q.expected or ())
        lines.append(f"  missed (line {q.line}): {q.question!r}: got {got}; expected {want}")
    for q, hits in result.leaked:
        lines.append(f"  answered (line {q.line}) but should not: {q.question!r}: "
                     + ", ".join(h.citation for h in hits))
    return "\n".join(lines)
