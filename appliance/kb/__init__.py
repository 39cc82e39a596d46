"""The business's knowledge base: kb/ files -> passages in SQLite -> hybrid search.

- sources.py: CSV / Markdown / text files -> passages (pure), with warnings naming file and line.
- text.py: normalisation shared by indexing and search (case, accents, Hebrew points, word
  variants for Hebrew prefixes and Russian endings, SKUs without separators).
- embed.py: ``Embedder`` (llama-cpp-python, GGUF), normalised float32 vectors.
- index.py: ``Indexer.ingest(directory)``: content-hashed, one transaction per file.
- search.py: ``KnowledgeBase.search(question)`` -> ``list[Hit]`` (BM25 + trigrams + vectors,
  reciprocal-rank fusion, a floor below which nothing is returned).
- commands.py: ``appliance kb ingest | search | stats``.
"""
