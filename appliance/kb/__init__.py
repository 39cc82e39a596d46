"""The business's knowledge base: kb/ files -> passages in SQLite -> hybrid search.

- sources.py: CSV / Markdown / text files -> passages (pure), with warnings naming file and line.
- text.py: normalisation shared by indexing and search (case, accents, Hebrew points, word
  variants for Hebrew prefixes and Russian endings, SKUs without separators).
- embed.py: ``Embedder`` (llama-cpp-python, GGUF), normalised float32 vectors.
- index.py: ``Indexer.ingest(directory)``: content-hashed, one transaction per file.
- search.py: ``KnowledgeBase.search(question)`` -> ``list[Hit]`` (BM25 + trigrams + passage
  vectors + title vectors, reciprocal-rank fusion, a floor below which nothing is returned).
- calibration.py: the floors per embedding model family.
- vocab.py: query expansion with the KB's own words (embedded at ingest).
- matrix.py: in-memory vector matrices (title vectors, vocabulary) reloaded per ingest.
- evaluate.py: recall@k / abstention of a questions file (``appliance kb eval``).
- commands.py: ``appliance kb ingest | search | stats | eval``.
"""
