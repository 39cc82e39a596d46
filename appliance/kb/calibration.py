"""Per embedding model: where the floors sit (pure data and lookup).

Cosine similarities are not comparable across models (multilingual-e5 puts unrelated texts at
0.75, MiniLM at 0.1), so every threshold that reads a similarity is chosen per model family; the
first needle found in the model's name wins.

- ``min_similarity``: a passage this similar to the question is an answer on its own.
- ``best_similarity``: the single best match (ranked first by the vectors and found by the
  word retrievers too) is returned when at least this similar, even below ``min_similarity``:
  two retrievers agreeing is evidence the floor should not hide.
- ``expansion``: a question word is expanded to KB words at least this similar (vocab.py).
- ``title_similarity``: a passage whose own title (heading, row name) is this similar to the
  question is an answer: short questions match a title better than a whole passage.
- ``latin_only``: the model understands only Latin-script words (no expansion for others).

The all-MiniLM-L6-v2 values were calibrated on the dev business of
tests/data/kb_businesses (dental) and checked on the held-out ones; never on kb/ (the shipped
sample). So were the multilingual-e5 ones (see below). The others are starting points:
`appliance kb search` prints similarities and `appliance kb eval` measures a choice on the
owner's own questions.
"""

from __future__ import annotations

from dataclasses import dataclass

from .confidence import Logistic
from .embed import model_family_name


@dataclass(frozen=True)
class Calibration:
    min_similarity: float
    best_similarity: float
    expansion: float
    title_similarity: float        # a passage whose title is this similar is an answer
    combined: float = 2.0          # similarity + COVERAGE_WEIGHT * coverage at least this
    latin_only: bool = False
    abstain: Logistic | None = None   # the fitted no-answer model (confidence.py)


CALIBRATIONS: tuple[tuple[str, Calibration], ...] = (
    ("minilm", Calibration(min_similarity=0.5, best_similarity=0.35, expansion=0.7,
                           title_similarity=0.7, combined=0.7, latin_only=True)),
    # Calibrated on dental with real multilingual-e5-small weights (4-bit, bench/kb_e5.py):
    # every similarity sits in 0.75-0.93, so expansion is off (at 0.9 "botox" found KB words)
    # and titles hardly count; no dev out-of-KB question is more similar than 0.86.
    ("e5-", Calibration(min_similarity=0.87, best_similarity=0.84, expansion=0.99,
                        title_similarity=0.9, combined=1.12)),
    ("embeddinggemma", Calibration(min_similarity=0.45, best_similarity=0.35, expansion=0.7,
                                   title_similarity=0.5)),
)
FALLBACK = Calibration(min_similarity=0.5, best_similarity=0.4, expansion=0.8,
                       title_similarity=0.55, latin_only=True)
DEFAULT_MIN_COVERAGE = 0.6
COVERAGE_WEIGHT = 0.5


def calibration_for(model_name: str) -> Calibration:
    lowered = model_family_name(model_name)
    for needle, calibration in CALIBRATIONS:
        if needle in lowered:
            return calibration
    return FALLBACK
