-- The knowledge base: source files, their passages, and two full-text indexes sharing the
-- passages' ids. The vector table (kb_vec, sqlite-vec vec0, rowid = kb_passages.id) is created
-- by appliance/kb/index.py once the embedding model, hence the dimension, is known.

-- embedding_model, embedding_dim, embedding_name, last_ingest_at
CREATE TABLE kb_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per source file that produced passages (or was indexed before and still counts).
CREATE TABLE kb_files (
    id         INTEGER PRIMARY KEY,
    path       TEXT NOT NULL UNIQUE,             -- relative to the kb directory, '/' separated
    sha256     TEXT NOT NULL,                    -- of the file's bytes; '' forces a re-index
    size       INTEGER NOT NULL,                 -- bytes
    kind       TEXT NOT NULL,                    -- csv, markdown, text
    passages   INTEGER NOT NULL,
    warnings   INTEGER NOT NULL DEFAULT 0,       -- rows skipped etc. at the last ingest
    embedding_model TEXT NOT NULL DEFAULT '',    -- identity of the model its vectors came from
                                                 -- ('' = indexed without vectors)
    indexed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

CREATE TABLE kb_passages (
    id           INTEGER PRIMARY KEY,
    file_id      INTEGER NOT NULL REFERENCES kb_files(id) ON DELETE CASCADE,
    ordinal      INTEGER NOT NULL,               -- position in the file, from 0
    title        TEXT NOT NULL,                  -- heading path, or the CSV row's name
    text         TEXT NOT NULL,                  -- the body as the bot reads it
    locator      TEXT NOT NULL,                  -- 'row 7', 'Returns > Refunds', 'lines 3-9'
    row_number   INTEGER,                        -- CSV: spreadsheet row (header = row 1)
    heading      TEXT,                           -- Markdown: heading path
    line_start   INTEGER NOT NULL,
    line_end     INTEGER NOT NULL,
    fields       TEXT,                           -- CSV: JSON object column -> value
    content_hash TEXT NOT NULL,                  -- sha256 of the embedded text (vector reuse)
    UNIQUE (file_id, ordinal)
);
CREATE INDEX kb_passages_hash ON kb_passages(content_hash);

-- Word index for BM25. Text is normalised in Python first (case folded, diacritics and Hebrew
-- points removed), so the tokenizer only splits; `extra` holds word variants (Hebrew without
-- prefix letters, Russian 5-letter stems) and codes without separators (appliance/kb/text.py).
CREATE VIRTUAL TABLE kb_fts USING fts5(
    title, body, extra,
    tokenize = "unicode61 remove_diacritics 2"
);

-- Character trigrams of the same normalised text: misspellings, word forms (Russian endings,
-- Hebrew prefix letters) and partial SKUs still match.
CREATE VIRTUAL TABLE kb_trigram USING fts5(
    title, body, extra,
    tokenize = "trigram"
);

-- Document frequencies of words (the no-answer floor's word coverage, BM25 term choice) and of
-- trigrams (the trigram query keeps the rare ones: common trigrams cost time, not precision).
CREATE VIRTUAL TABLE kb_fts_vocab USING fts5vocab(kb_fts, 'row');
CREATE VIRTUAL TABLE kb_trigram_vocab USING fts5vocab(kb_trigram, 'row');
