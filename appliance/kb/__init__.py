"""The business's knowledge base: kb/ files -> passages in SQLite -> hybrid search.

- sources.py: CSV / Markdown / text files -> passages (pure), with warnings naming file and line;
  passage.py: the Passage and its sizes; markdown.py: Markdown and text splitting.
- text.py: normalisation shared by indexing and search (case, accents, Hebrew points, word
  variants for Hebrew prefixes and Russian endings, SKUs without separators).
- embed.py: ``Embedder`` (llama-cpp-python, GGUF), normalised float32 vectors.
- index.py: ``Indexer.ingest(directory)``: content-hashed, one transaction per file;
  ``ingest_in_background`` for a server that opens its port first. stats.py: what it holds.
- search.py: ``KnowledgeBase.search(question)`` -> ``list[Hit]``; retrieve.py: BM25 + trigrams +
  passage vectors + title vectors, reciprocal-rank fusion; coverage.py: word coverage;
  floor.py: the hand floors below which nothing is returned; confidence.py: the per-model
  logistic no-answer model that can replace them (fit: bench/kb_calibrate.py).
- calibration.py: the floors (and an optional fitted no-answer model) per embedding model.
- synonyms.py: generic receptionist vocabulary (location/address, price/cost, book/appointment).
- vocab.py: query expansion with the KB's own words (embedded at ingest).
- tables.py: ``table_exists`` (shared by index.py and its side tables).
- matrix.py: in-memory vector matrices (title vectors, vocabulary) reloaded per ingest.
- evaluate.py: recall@k / abstention of a questions file (``appliance kb eval``).
- commands.py: ``appliance kb ingest | search | stats | eval``.
"""
