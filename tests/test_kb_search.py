"""KnowledgeBase.search: hits and their sources, modes, the floor, hostile input, threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from appliance.config import KbSettings, ModelRef
from appliance.kb.search import Hit, KnowledgeBase, default_min_similarity
from appliance.store.db import Database
from tests.support.kb import embedder, ingested, ingested_template  # noqa: F401 (fixtures)


@pytest.fixture
def kb(ingested: Database, embedder) -> KnowledgeBase:  # noqa: F811
    return KnowledgeBase(ingested, embedder)


def test_csv_hit_carries_file_row_fields_and_retrievers(kb: KnowledgeBase) -> None:
    hit = kb.search("How much is the Dyson V12?")[0]
    assert (hit.source, hit.row, hit.locator) == ("products.csv", 22, "row 22")
    assert hit.fields["price"] == "₪2,590" and hit.fields["sku"] == "SA-VC-8001"
    assert set(hit.found_by) == {"bm25", "vector", "title"}   # no unknown word: no trigram
    assert hit.similarity is not None and 0 < hit.similarity <= 1 and hit.coverage == 1.0
    assert hit.citation == "products.csv row 22"
    assert hit.for_prompt().startswith("[products.csv row 22]\nsku: SA-VC-8001")


def test_markdown_hit_carries_its_heading(kb: KnowledgeBase) -> None:
    hit = kb.search("Are you open on Yom Kippur?")[0]
    assert hit.source == "hours.md" and hit.heading == "Opening hours > Holidays"
    assert hit.row is None and hit.line_start > 1 and "Yom Kippur" in hit.text


def assert_ranked(hits: list[Hit]) -> None:
    """The reranked best candidates first (parts.py), by their rerank score, then the rest
    by the fused score."""
    head = [h.rerank_score for h in hits if h.rerank_score is not None]
    assert head and head == sorted(head, reverse=True)
    assert [h.rerank_score is not None for h in hits] == [True] * len(head) + [False] * (
        len(hits) - len(head))
    tail = [h.score for h in hits[len(head):]]
    assert tail == sorted(tail, reverse=True)


def test_hits_are_ranked_and_limited(kb: KnowledgeBase) -> None:
    hits = kb.search("washing machine", k=10)
    assert 3 < len(hits) <= 10
    assert_ranked(hits)
    assert len(kb.search("washing machine")) == kb.top_k == 4
    assert len(kb.search("washing machine", k=1)) == 1


@pytest.mark.parametrize("mode, retrievers", [
    ("bm25", {"bm25"}), ("trigram", {"trigram"}), ("vector", {"vector"}),
    ("lexical", {"bm25", "trigram"}), ("hybrid", {"bm25", "trigram", "vector", "title"})])
def test_modes_use_only_their_retrievers(kb: KnowledgeBase, mode: str,
                                         retrievers: set[str]) -> None:
    # The typo gives the trigram retriever something to do; MiniLM alone cannot read it.
    question = "How much is delivery to Eilat?" if mode == "vector" else "delivry to Eilat"
    hits = kb.search(question, k=10, mode=mode)  # type: ignore[arg-type]
    assert hits and hits[0].source == "delivery.md"
    assert set().union(*(h.found_by for h in hits)) == retrievers


def test_an_answered_question_gets_k_passages(kb: KnowledgeBase) -> None:
    """Once the floor admits the best match, the ranking's next passages fill the k slots
    (in fused order), so an answer ranked 2nd or 3rd is not hidden by the floor."""
    hits = kb.search("delivry to Eilat", k=5)
    assert len(hits) == 5 and hits[0].source == "delivery.md"
    assert_ranked(hits)
    assert kb.search("Do you sell cars?", k=5) == []


def test_trigrams_only_for_words_the_index_does_not_know(kb: KnowledgeBase) -> None:
    assert kb.search("delivery to Eilat", mode="trigram") == []
    hit = kb.search("airfrier", mode="trigram")[0]
    assert hit.row == 33 and hit.found_by == ("trigram",)


def test_unknown_mode(kb: KnowledgeBase) -> None:
    with pytest.raises(ValueError):
        kb.search("x", mode="magic")  # type: ignore[arg-type]


@pytest.mark.parametrize("question", [
    "Do you sell cars?", "What is the capital of France?", "", "   ", "?!", "hello, thanks"])
def test_nothing_relevant_means_no_hits(kb: KnowledgeBase, question: str) -> None:
    assert kb.search(question) == []


@pytest.mark.parametrize("question", [
    'price of "Dyson', "Dyson AND OR NOT", "NEAR(dyson v12)", "title:dyson", "dyson*",
    "^dyson", "-dyson +v12", "(dyson", "dyson)", "d'yson ; DROP TABLE kb_passages; --",
    "\u0000dyson", "💨 dyson v12 💨"])
def test_hostile_text_is_just_words(kb: KnowledgeBase, question: str) -> None:
    hits = kb.search(question)
    assert all(h.source for h in hits)


def test_lexical_only_without_a_model(ingested: Database) -> None:  # noqa: F811
    kb = KnowledgeBase(ingested, None)
    hits = kb.search("warranty on the LG instaview")
    assert hits[0].row == 8 and hits[0].similarity is None
    assert "vector" not in hits[0].found_by


def test_floor_settings() -> None:
    assert default_min_similarity("all-MiniLM-L6-v2") == 0.5
    assert default_min_similarity("multilingual-e5-small") == 0.87
    assert default_min_similarity("Multilingual E5 Small") == 0.87   # GGUF general.name
    assert default_min_similarity("bge-m3") == 0.5
    ref = ModelRef("[kb] embedding_model", Path("/m.gguf"))
    explicit = KbSettings(Path("kb"), ref, top_k=3, min_score=0.3)
    kb = KnowledgeBase.from_settings(None, None, explicit)  # type: ignore[arg-type]
    assert (kb.min_similarity, kb.top_k) == (0.3, 3)
    default = KbSettings(Path("kb"), ref, top_k=4, min_score=0.0)
    assert KnowledgeBase.from_settings(None, None, default).min_similarity == \
        default_min_similarity("")  # type: ignore[arg-type]


def test_concurrent_searches_from_threads(kb: KnowledgeBase) -> None:
    questions = ["How much is delivery to Eilat?", "LG OLED65C3", "Можно ли вернуть товар?",
                 "כמה עולה ביקור טכנאי?"] * 5
    expected = [[h.citation for h in kb.search(q)] for q in questions]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: [h.citation for h in kb.search(q)], questions))
    assert got == expected


def test_instruction_prompts_follow_the_model_family() -> None:
    from appliance.kb.embed import Prompts, prompts_for

    assert prompts_for("multilingual-e5-small-q8_0.gguf") == Prompts("query: ", "passage: ")
    assert prompts_for("x.gguf", "Multilingual E5 Small").query == "query: "
    assert prompts_for("embeddinggemma-300M-Q8_0.gguf").query.startswith("task: search result")
    assert prompts_for("minilm-l6-v2-f16.gguf", "all-MiniLM-L6-v2") == Prompts()


def test_a_fitted_no_answer_model_decides_once_per_question(kb: KnowledgeBase) -> None:
    """With a Logistic in the calibration, the top candidates' features decide; the hits are
    then the ranking's best k (confidence.py)."""
    from dataclasses import replace

    from appliance.kb.confidence import FEATURE_NAMES, Logistic

    question = "How much is delivery to Eilat?"
    hits, found = kb.search_with_features(question)
    assert found is None and hits[0].source == "delivery.md"   # hand floors: no features
    zero = (0.0,) * len(FEATURE_NAMES)
    kb.calibration = replace(kb.calibration, abstain=Logistic(zero, bias=-5.0))
    hits, found = kb.search_with_features(question)
    assert hits == [] and found is not None
    assert 0 < found.similarity <= 1 and found.coverage == 1.0 and found.readable == 1.0
    # weights on coverage: the same question answers, an unrelated one does not
    coverage_only = tuple(8.0 if n == "coverage" else 0.0 for n in FEATURE_NAMES)
    kb.calibration = replace(kb.calibration, abstain=Logistic(coverage_only, bias=-4.0))
    hits = kb.search(question, k=3)
    assert len(hits) == 3 and hits[0].source == "delivery.md"
    assert kb.search("What is the capital of France?") == []
    with pytest.raises(ValueError):
        Logistic((1.0,), bias=0.0)


def test_receptionist_synonyms_stand_in_for_unknown_words() -> None:
    from appliance.kb.synonyms import synonyms

    assert "address" in synonyms("located") and "price" in synonyms("cost")
    assert synonyms("kettle") == ()


def test_question_words_are_embedded_once_and_answers_do_not_change(
        ingested: Database, embedder) -> None:  # noqa: F811
    """kb/word_cache.py: a word's vector is kept, so the next search embeds only the question."""
    embedded: list[list[str]] = []

    class Counting:
        name, dimension, identity = embedder.name, embedder.dimension, embedder.identity

        def embed_query(self, text):
            return embedder.embed_query(text)

        def embed_query_and_words(self, text, words):
            embedded.append(list(words))
            return embedder.embed_query_and_words(text, words)

        def embed_passages(self, texts, batch=16):
            return embedder.embed_passages(texts, batch)

    kb = KnowledgeBase(ingested, Counting())
    fresh = KnowledgeBase(ingested, embedder)
    question = "could a plumber fix my leaking kitchen tap tomorrow"
    first = kb.search(question)
    assert embedded and "plumber" in embedded[0], "the question's words went with it to the model"
    again = kb.search(question)
    assert len(embedded) == 1, "the second search embedded no word again"
    kb.search("is a plumber expensive")                  # only its new words are embedded
    assert embedded[1] and "plumber" not in embedded[1]
    assert [h.text for h in again] == [h.text for h in first] == [
        h.text for h in fresh.search(question)]


def test_the_kbs_own_words_are_not_embedded_again_at_question_time(
        ingested: Database, embedder) -> None:  # noqa: F811
    """"kitchen" and "tap" are words of the KB: ingest embedded them as passages, the way a
    question's words are embedded, so a question takes those vectors and embeds the rest."""
    kb = KnowledgeBase(ingested, embedder)
    words = ["kitchen", "tap", "plumber"]
    known = ingested.read_sync(lambda c: kb.vocabulary.known(c, embedder.identity, words))
    assert set(known) == {"kitchen", "tap"}                 # "plumber" is not in the KB
    again = embedder.embed_passages(["kitchen", "tap"])
    # the same vector up to batching noise (ingest embeds words 64 at a time)
    assert min(float(known[w] @ v) for w, v in zip(["kitchen", "tap"], again)) > 0.9999
    _, vectors = kb._embed("could a plumber fix my leaking kitchen tap", ("bm25", "vector"))
    assert {"kitchen", "tap", "plumber"} <= set(vectors)
    assert float(vectors["kitchen"] @ again[0]) > 0.9999


def test_the_in_memory_vector_ranking_is_sqlite_vecs(kb: KnowledgeBase) -> None:
    """The vector retriever ranks a numpy copy of kb_vec (matrix.py); it must give the very
    candidates, order and similarities of sqlite-vec's own KNN, and follow an ingest."""
    from appliance.kb import retrieve
    from appliance.kb.index import VEC_TABLE

    def compare(conn, vector) -> None:  # noqa: ANN001
        rows = conn.execute(f"SELECT rowid, distance FROM {VEC_TABLE} WHERE embedding "
                            "MATCH ? AND k = 20 ORDER BY distance",
                            (vector.astype("<f4").tobytes(),)).fetchall()
        scored, ids, sims = retrieve.nearest(conn, kb._vector_matrix, vector, 20)
        assert ids == [pid for pid, _ in rows]
        assert all(abs(sims[pid] - (1 - d)) < 1e-5 for pid, d in rows)
        outside = conn.execute(f"SELECT rowid FROM {VEC_TABLE} WHERE rowid NOT IN "
                               f"({','.join('?' * len(ids))}) LIMIT 1", ids).fetchone()[0]
        exact = retrieve.similarity(conn, VEC_TABLE, outside, vector)
        assert scored is not None and exact is not None
        assert abs(scored.get(outside) - exact) < 1e-5

    assert kb.embedder is not None
    for question in ("How much is the Dyson V12?", "do you deliver to Haifa",
                     "מה שעות הפתיחה", "washer warranty"):
        vector = kb.embedder.embed_query(question)
        kb.db.read_sync(lambda conn, v=vector: compare(conn, v))
    before = kb.db.read_sync(kb._vector_matrix.rows)
    kb.db.write_sync(lambda c: c.execute(
        "UPDATE kb_meta SET value = 'changed' WHERE key = 'vectors_stamp'"))
    assert kb.db.read_sync(kb._vector_matrix.rows) is not before      # read again
    assert kb.db.read_sync(kb._vector_matrix.rows) is kb.db.read_sync(kb._vector_matrix.rows)
    # An index last written before the stamp existed is still searched by meaning.
    kb.db.write_sync(lambda c: c.execute("DELETE FROM kb_meta WHERE key = 'vectors_stamp'"))
    assert "vector" in kb.search("How much is the Dyson V12?")[0].found_by


def test_start_up_loads_the_vectors_the_first_question_uses(ingested: Database,  # noqa: F811
                                                            embedder) -> None:  # noqa: F811
    kb = KnowledgeBase(ingested, embedder)
    matrices = (kb._vector_matrix, kb._title_matrix, kb.vocabulary._matrix)
    assert all(m._cached is None for m in matrices)
    kb.load_vectors()
    loaded = [m._cached for m in matrices]
    assert all(c is not None for c in loaded)
    assert kb.search("How much is the Dyson V12?")
    assert all(m._cached is c for m, c in zip(matrices, loaded))   # nothing read again
