"""Knowledge-base query latency, embedding included, at 1k and 10k passages on 2 cores.

    python -m bench.kb_bench [--sizes 1000 10000] [--repeats 5] [--threads 1 2]

The sample business in kb/ is grown with synthetic but realistic passages (product CSVs in the
same shape as kb/products.csv, and Markdown service/FAQ pages, some in Hebrew and Russian)
until the index holds the requested number of passages, ingested through the real Indexer with
the real all-MiniLM-L6-v2 GGUF from tests/support/models.py. The questions are those of
tests/kb_eval.jsonl (English, Hebrew, Russian, misspellings, SKUs, no-answer), each asked
``--repeats`` times after a warm-up. Reported per mode: median and p95 of the whole
KnowledgeBase.search() call (embedding the question included), plus the query embedding
alone. The process is pinned to 2 CPUs when the machine has more. Other work on the machine
adds noise: the load average is printed with the results.

Writes bench/results/kb.md. Target: hybrid p95 < 30 ms at 10k passages.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from appliance.kb.embed import Embedder
from appliance.kb.index import Indexer, IngestReport
from appliance.kb.search import KnowledgeBase
from appliance.store.db import Database
from tests.support.models import make_embedding_gguf, minilm_source_dir
from tests.support.kb import KB_DIR, load_questions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "kb.md"
CACHE = Path(__file__).resolve().parent / ".cache" / "kb-bench"   # git-ignored
MODELS = ROOT / "tests" / ".cache" / "models"

BRANDS = ["Bosch", "Samsung", "LG", "Electra", "Tadiran", "Beko", "Tornado", "Crystal", "Sauter",
          "Panasonic", "Philips", "De'Longhi", "Kenwood", "Ninja", "Xiaomi", "Dyson", "Roborock",
          "Midea", "Haier", "Whirlpool", "Siemens", "AEG", "Gorenje", "Hisense", "TCL", "Sharp"]
CATEGORIES = {
    "washing machines": ("washing machine", "kg", (6, 12), (1390, 4990)),
    "dryers": ("tumble dryer", "kg", (6, 10), (1190, 4490)),
    "refrigerators": ("refrigerator", "L", (90, 700), (690, 12990)),
    "dishwashers": ("dishwasher", "place settings", (6, 16), (1290, 4590)),
    "ovens": ("built-in oven", "L", (55, 80), (1190, 5990)),
    "microwaves": ("microwave", "L", (20, 42), (390, 1590)),
    "air conditioners": ("inverter air conditioner", "HP", (1, 3), (1690, 6990)),
    "TVs": ("smart TV", "inch", (32, 85), (890, 14990)),
    "vacuum cleaners": ("vacuum cleaner", "W", (400, 2200), (290, 3490)),
    "coffee machines": ("coffee machine", "bar", (9, 19), (290, 5990)),
    "small appliances": ("kitchen appliance", "W", (300, 3000), (99, 1490)),
}
FEATURES = ["Shabbat mode", "Wi-Fi and app control", "inverter motor", "energy class A",
            "quiet operation", "child lock", "steam function", "self-cleaning", "timer",
            "stainless steel finish", "touch controls", "LED display", "eco program",
            "no frost", "fast mode", "remote control", "HEPA filter", "delay start"]
TOPICS = ["installation", "maintenance", "cleaning", "warranty", "spare parts", "delivery",
          "returns", "payment", "business customers", "trade-in", "opening hours", "parking"]
HEBREW = ["משלוח", "אחריות", "התקנה", "תיקון", "מחיר", "מבצע", "מקרר", "מכונת כביסה", "מזגן",
          "שעות פתיחה", "החזרה", "תשלומים", "טכנאי", "חלקי חילוף"]
RUSSIAN = ["доставка", "гарантия", "установка", "ремонт", "цена", "скидка", "холодильник",
           "стиральная машина", "кондиционер", "часы работы", "возврат", "рассрочка", "мастер"]


def product_csv(rng: random.Random, start: int, rows: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sku", "name", "category", "price", "warranty", "description"])
    for n in range(start, start + rows):
        category = rng.choice(list(CATEGORIES))
        noun, unit, (lo, hi), (plo, phi) = CATEGORIES[category]
        brand = rng.choice(BRANDS)
        size = rng.randint(lo, hi)
        letters = "ABCDEFGHKMNRSTWX"
        model = f"{rng.choice(letters)}{rng.choice(letters)}{rng.randint(10, 999)}"
        price = rng.randrange(plo, phi, 10)
        features = ", ".join(rng.sample(FEATURES, 3))
        writer.writerow([
            f"SB-{category[:2].upper()}-{n:05d}", f"{brand} {model} {size} {unit} {noun}", category,
            f"₪{price:,}", f"{rng.choice([1, 2, 3, 5])} years",
            f"{noun.capitalize()} by {brand}, {size} {unit}, with {features}. "
            f"Model {model}; in stock at the Tel Aviv showroom."])
    return out.getvalue()


def markdown_page(rng: random.Random, number: int, sections: int) -> str:
    lines = [f"# Customer guide {number}", ""]
    for s in range(sections):
        topic = rng.choice(TOPICS)
        category = rng.choice(list(CATEGORIES))
        lines += [f"## {topic.capitalize()} for {category} ({number}.{s})", ""]
        sentences = [
            f"Our {topic} service for {category} covers all brands, including "
            f"{rng.choice(BRANDS)} and {rng.choice(BRANDS)}.",
            f"It costs ₪{rng.randrange(90, 900, 10)} and usually takes {rng.randint(1, 10)} "
            "business days.",
            f"Customers in {rng.choice(['Tel Aviv', 'Holon', 'Haifa', 'Jerusalem', 'Netanya'])} "
            f"can book it by phone or on WhatsApp.",
            f"Ask about the {rng.choice(FEATURES)} when you call.",
        ]
        if rng.random() < 0.2:
            sentences.append(" ".join(rng.sample(HEBREW, 4)) + ".")
        if rng.random() < 0.2:
            sentences.append(" ".join(rng.sample(RUSSIAN, 4)).capitalize() + ".")
        lines += [" ".join(sentences), ""]
    return "\n".join(lines)


def grow(directory: Path, passages: int, already: int, rng: random.Random) -> int:
    """Add files to ``directory`` until about ``passages`` passages exist; returns the count."""
    count, number = already, already
    while count < passages:
        rows = min(250, passages - count)
        if number % 5 == 4:                    # every fifth file a Markdown page
            sections = max(1, min(50, rows))
            (directory / f"guide-{number:05d}.md").write_text(
                markdown_page(rng, number, sections), encoding="utf-8")
            count += sections
        else:
            (directory / f"catalogue-{number:05d}.csv").write_text(
                product_csv(rng, number * 1000, rows), encoding="utf-8")
            count += rows
        number += 1
    return count


@dataclass(frozen=True)
class Shape:
    """Transformer dimensions of an embedding model, for a random-weight speed stand-in."""

    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    note: str


# Compute-equivalent BERT stand-ins (random weights, Q8_0, MiniLM's tokenizer: the vocabulary
# size changes memory, not compute). EmbeddingGemma is a Gemma-3 encoder (24 layers, 768 wide,
# 1152 gated FFN, 3 query heads x 256, 1 KV head); a BERT with 24 x 768 and a 1152 FFN has about
# the same ~100M non-embedding parameters per token.
SHAPES = (
    Shape("multilingual-e5-small shape", 12, 384, 1536, 12,
          "XLM-R/BERT 12 x 384 (paraphrase-multilingual-MiniLM-L12-v2 has the same shape)"),
    Shape("embeddinggemma-300m shape", 24, 768, 1152, 12,
          "approximation of Gemma-3 24 x 768, 1152 FFN"),
)


def shape_gguf(path: Path, shape: Shape) -> Path:
    """A random-weight BERT GGUF with ``shape``'s dimensions (speed only, meaningless output)."""
    import json

    import gguf
    import numpy as np
    from gguf.quants import quantize

    if path.exists():
        return path
    model_dir = minilm_source_dir()
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    special = {t["content"] for t in tokenizer.get("added_tokens", [])}
    vocab = sorted(tokenizer["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t if t in special else (t[2:] if t.startswith("##") else "\u2581" + t)
              for t, _ in vocab]
    types = [int(gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL)
             for t, _ in vocab]
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(tmp), "bert")
    w.add_name(shape.name)
    w.add_context_length(512)
    w.add_embedding_length(shape.hidden)
    w.add_feed_forward_length(shape.ffn)
    w.add_block_count(shape.layers)
    w.add_head_count(shape.heads)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_token_type_count(2)
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("bert-bge")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_bos_token_id(101)
    w.add_eos_token_id(102)
    w.add_unk_token_id(100)
    w.add_sep_token_id(102)
    w.add_pad_token_id(0)
    w.add_mask_token_id(103)
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)

    def matrix(name: str, rows: int, cols: int) -> None:
        data = rng.normal(0, 0.02, (rows, cols)).astype(np.float32)
        q8 = quantize(data, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(name, q8, raw_shape=q8.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def vector(name: str, n: int, value: float) -> None:
        w.add_tensor(name, np.full(n, value, dtype=np.float32))

    h = shape.hidden
    matrix("token_embd.weight", len(tokens), h)
    w.add_tensor("position_embd.weight", rng.normal(0, 0.02, (512, h)).astype(np.float32))
    w.add_tensor("token_types.weight", rng.normal(0, 0.02, (2, h)).astype(np.float32))
    vector("token_embd_norm.weight", h, 1.0)
    vector("token_embd_norm.bias", h, 0.0)
    for i in range(shape.layers):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            matrix(f"blk.{i}.{part}.weight", h, h)
            vector(f"blk.{i}.{part}.bias", h, 0.0)
        for norm in ("attn_output_norm", "layer_output_norm"):
            vector(f"blk.{i}.{norm}.weight", h, 1.0)
            vector(f"blk.{i}.{norm}.bias", h, 0.0)
        matrix(f"blk.{i}.ffn_up.weight", shape.ffn, h)
        vector(f"blk.{i}.ffn_up.bias", shape.ffn, 0.0)
        matrix(f"blk.{i}.ffn_down.weight", h, shape.ffn)
        vector(f"blk.{i}.ffn_down.bias", h, 0.0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.rename(path)
    return path


def vector_scan(dimension: int, passages: int, repeats: int = 30) -> Timing:
    """KNN (k=20, cosine) over ``passages`` random unit vectors in a file-backed vec0 table."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open_sync(Path(tmp) / "scan.db")
        rng = np.random.default_rng(1)
        vectors = rng.normal(size=(passages, dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

        def fill(conn) -> None:
            conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{dimension}] "
                         "distance_metric=cosine)")
            conn.executemany("INSERT INTO v(rowid, embedding) VALUES (?, ?)",
                             ((i, v.tobytes()) for i, v in enumerate(vectors)))

        db.write_sync(fill)

        def knn(conn) -> list[float]:
            conn.execute("PRAGMA cache_size = -65536")
            samples = []
            for i in range(repeats + 3):
                started = time.perf_counter()
                conn.execute("SELECT rowid, distance FROM v WHERE embedding MATCH ? AND k = 20",
                             (vectors[i].tobytes(),)).fetchall()
                samples.append((time.perf_counter() - started) * 1000)
            return samples[3:]

        try:
            return Timing(f"vec0 KNN {dimension}-d", db.read_sync(knn))
        finally:
            db.close()


@dataclass
class Timing:
    label: str
    samples: list[float]          # milliseconds, wall clock
    cpu: list[float] = field(default_factory=list)   # milliseconds of this process's CPU time

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 0.95)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")

    @property
    def cpu_p95(self) -> float:
        return percentile(self.cpu, 0.95) if self.cpu else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(label: str, fn: Callable[[str], object], questions: list[str],
            repeats: int) -> Timing:
    for q in questions[:5]:
        fn(q)                                   # warm-up: caches, page cache, threads
    samples, cpu = [], []
    for _ in range(repeats):
        for q in questions:
            started, cpu_started = time.perf_counter(), time.process_time()
            fn(q)
            samples.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
    return Timing(label, samples, cpu)


def build_index(work: Path, previous: Path | None, size: int,
                embedder: "Embedder | StandInPassages") -> tuple[Database, IngestReport, str]:
    """kb/ grown to ``size`` passages in ``work``, ingested; starts from ``previous`` if given.

    The generator is seeded, so a second run writes identical files and the product's own
    content hashes make its ingest a no-op; the first run's ingest figures are kept in
    ``work/ingest.txt``.
    """
    kb_dir = work / "kb"
    if not (work / "bench.db").exists():
        shutil.rmtree(work, ignore_errors=True)
        if previous is not None:
            shutil.copytree(previous, work, ignore=shutil.ignore_patterns("ingest.txt"))
        else:
            work.mkdir(parents=True)
            shutil.copytree(KB_DIR, kb_dir)
    have = sum(1 for _ in kb_dir.iterdir())
    grow(kb_dir, size - 70, 0, random.Random(20240601))
    db = Database.open_sync(work / "bench.db")
    started = time.perf_counter()
    report = Indexer(db, embedder).ingest(kb_dir)
    seconds = time.perf_counter() - started
    record = work / "ingest.txt"
    if report.passages_embedded:
        record.write_text(
            f"{report.passages_total} passages: ingest of {report.passages_embedded} new "
            f"passages ({sum(1 for _ in kb_dir.iterdir()) - have} new files) took "
            f"{seconds:.1f} s ({report.passages_embedded / max(seconds, 1e-9):.1f} passages/s, "
            f"2 threads, load average {os.getloadavg()[0]:.1f})", encoding="utf-8")
    line = (record.read_text(encoding="utf-8") if record.exists() else
            f"{report.passages_total} passages")
    if not report.passages_embedded:
        line += f"; this run found it indexed already ({seconds:.1f} s to check every file)"
    return db, report, line


class StandInPassages:
    """The real embedder's identity and query vectors, but seeded random passage vectors.

    For --stand-in-passages: embedding 10k passages with the real model takes hours on a loaded
    2-core box, and the query latency does not depend on the passage vectors' values
    (sqlite-vec scans them all; the lexical indexes are real). Recall is not measured here.
    """

    def __init__(self, real: Embedder) -> None:
        self.real, self.name, self.dimension = real, real.name, real.dimension

    @property
    def identity(self) -> str:
        return self.real.identity

    def embed_query(self, text: str) -> np.ndarray:
        return self.real.embed_query(text)

    def embed_passages(self, texts: list[str], batch: int = 16) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(text.encode("utf-8")[:8].ljust(8, b"\0"), "little") ^ len(text)
            v = np.random.default_rng(seed).normal(size=self.dimension)
            out[i] = v / np.linalg.norm(v)
        return out


def pin_two_cores() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return f"{os.cpu_count()} CPUs (not pinned)"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 2:
        os.sched_setaffinity(0, cpus[:2])
        return f"pinned to CPUs {cpus[:2]} of {len(cpus)}"
    return f"{len(cpus)} CPUs"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kb_bench")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="query-embedding threads to compare")
    parser.add_argument("--fresh", action="store_true",
                        help="rebuild the synthetic knowledge bases (else reused from "
                             "bench/.cache/kb-bench: unchanged files are not re-embedded)")
    parser.add_argument("--stand-in-passages", action="store_true",
                        help="ingest with random passage vectors (timing only; see StandIn)")
    parser.add_argument("--no-shapes", action="store_true",
                        help="skip the random-weight model-shape comparison")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    cores = pin_two_cores()
    model = make_embedding_gguf(MODELS)
    questions = [q.question for q in load_questions()]
    rows: list[tuple[int, str, int, Timing]] = []
    ingests: list[str] = []
    loads = [os.getloadavg()[0]]
    work = CACHE
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    real_ingest_embedder = Embedder(model, threads=2)
    ingest_embedder = (StandInPassages(real_ingest_embedder) if args.stand_in_passages
                       else real_ingest_embedder)
    previous: Path | None = None
    try:
        for size in sorted(args.sizes):
            db, report, line = build_index(work / str(size), previous, size, ingest_embedder)
            previous = work / str(size)
            ingests.append(line)
            print(line, flush=True)
            try:
                for threads in args.threads:
                    embedder = Embedder(model, threads=threads)
                    try:
                        kb = KnowledgeBase(db, embedder)
                        cases: list[tuple[str, Callable[[str], object]]] = [
                            ("embed question only", embedder.embed_query),
                            ("hybrid (search)", kb.search),
                            ("vector only", lambda q, kb=kb: kb.search(q, mode="vector")),
                        ]
                        if threads == args.threads[0]:
                            cases += [("lexical (bm25 + trigram)",
                                       lambda q, kb=kb: kb.search(q, mode="lexical")),
                                      ("bm25 only",
                                       lambda q, kb=kb: kb.search(q, mode="bm25"))]
                        for label, fn in cases:
                            timing = measure(label, fn, questions, args.repeats)
                            rows.append((size, label, threads, timing))
                            loads.append(os.getloadavg()[0])
                            print(f"{report.passages_total:6} {label:26} threads={threads} "
                                  f"median {timing.median:6.2f} ms  p95 {timing.p95:6.2f} ms  "
                                  f"(cpu {timing.cpu_median:6.2f} / {timing.cpu_p95:6.2f})",
                                  flush=True)
                    finally:
                        embedder.close()
            finally:
                db.close()
    finally:
        real_ingest_embedder.close()

    shape_rows: list[tuple[str, int, Timing]] = []
    scans: list[Timing] = []
    if not args.no_shapes:
        short = [q for q in questions]
        for shape in SHAPES:
            path = shape_gguf(MODELS / f"kb-bench-{shape.layers}x{shape.hidden}.gguf", shape)
            for threads in args.threads:
                embedder = Embedder(path, threads=threads)
                try:
                    timing = measure(shape.name, embedder.embed_query, short, args.repeats)
                finally:
                    embedder.close()
                shape_rows.append((shape.name, threads, timing))
                loads.append(os.getloadavg()[0])
                print(f"{shape.name:30} threads={threads} embed median {timing.median:6.2f} ms "
                      f"p95 {timing.p95:6.2f} ms", flush=True)
        for dimension in (384, 768):
            scans.append(vector_scan(dimension, max(args.sizes)))
            print(f"{scans[-1].label} at {max(args.sizes)}: median {scans[-1].median:.2f} ms "
                  f"p95 {scans[-1].p95:.2f} ms", flush=True)

    lines = [
        "# Knowledge-base query latency",
        "",
        f"Machine: {cpu_name()}, {cores}; Python {platform.python_version()}; "
        f"model all-MiniLM-L6-v2 f16 GGUF (tests/support/models.py) via llama-cpp-python; "
        f"{len(questions)} questions from tests/kb_eval.jsonl x {args.repeats} repeats per cell "
        f"after a warm-up. Times in ms for the whole `KnowledgeBase.search()` call, embedding "
        f"of the question included. Load average during the run: "
        f"{min(loads):.1f}-{max(loads):.1f} (other work on the machine adds noise).",
        "",
        "CPU ms is the process's CPU time per call. With 1 query thread it is close to the "
        "wall time the call would take on an idle machine (SQLite and Python are single "
        "threaded), so it is the better estimate when the load average is high; with 2 threads "
        "it adds both threads' time (and llama.cpp's spinning).",
        "",
        "| passages (target) | what | query threads | median ms | p95 ms | CPU median ms | "
        "CPU p95 ms |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {size} | {label} | {threads} | {t.median:.2f} | {t.p95:.2f} | "
              f"{t.cpu_median:.2f} | {t.cpu_p95:.2f} |"
              for size, label, threads, t in rows]
    lines += ["", "Ingest (synthetic catalogue CSVs and guide pages added to kb/):", ""]
    lines += [f"- {line}" for line in ingests]
    if shape_rows:
        lines += ["", "## Candidate multilingual models: question embedding on this machine", "",
                  "Random-weight stand-ins with the candidates' transformer shapes (speed only; "
                  "Q8_0; see SHAPES in this file), embedding the same questions:", "",
                  "| shape | threads | median ms | p95 ms | CPU median ms | CPU p95 ms |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {threads} | {t.median:.2f} | {t.p95:.2f} | {t.cpu_median:.2f} | "
                  f"{t.cpu_p95:.2f} |" for name, threads, t in shape_rows]
        lines += ["", f"Vector search alone at {max(args.sizes)} passages (sqlite-vec brute "
                      "force, k=20): " + "; ".join(f"{t.label} median {t.median:.2f} ms, p95 "
                                                   f"{t.p95:.2f} ms" for t in scans) + "."]
    target = [(threads, t) for size, label, threads, t in rows
              if label == "hybrid (search)" and size >= 10000]
    if target:
        wall = min(t.p95 for _, t in target)
        single = [t.cpu_p95 for threads, t in target if threads == 1]
        lines += ["", f"Target p95 < 30 ms for hybrid at 10k passages: wall-clock p95 {wall:.1f} "
                      f"ms under this load" + (f"; CPU p95 with 1 query thread {single[0]:.1f} ms "
                                               "(idle-machine estimate)" if single else "") + "."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
