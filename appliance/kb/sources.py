"""Knowledge-base source files -> passages. Pure: bytes in, passages and warnings out, no I/O.

- CSV / TSV: one row = one passage; the header's column names stay field names, so the text
  reads "price: 1,299 ILS" and the fields are kept as a mapping. A malformed row (wrong number
  of fields, a quoting error) is skipped with a warning naming the line; the rest is kept.
- Markdown: split along headings (ATX "#" headings, not inside code fences); every passage
  carries its heading path ("Delivery > Eilat"). A section longer than ``MAX_CHARS`` is split
  along paragraphs, then lines, sentences and words, with ``OVERLAP_CHARS`` of overlap.
- Plain text: the same paragraph packing; the locator is the line range.

A whole file that cannot be used (not UTF-8, binary, empty, too large, unknown type) raises
``SourceSkipped`` with a reason code, a message and, where there is one, the line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Iterator, Mapping

from .markdown import split_markdown, split_text
from .passage import MAX_CHARS, OVERLAP_CHARS, TARGET_CHARS, Passage

__all__ = ["MAX_CHARS", "OVERLAP_CHARS", "TARGET_CHARS", "Passage", "split_markdown",
           "split_text"]

MAX_FILE_BYTES = 5_000_000
MAX_CSV_FIELD_CHARS = 20_000
MAX_RECORD_LINES = 32    # a CSV record (row) may span at most this many lines
MAX_WARNINGS = 20        # per file; the rest are counted in one last warning

KINDS = {".csv": "csv", ".tsv": "csv", ".md": "markdown", ".markdown": "markdown",
         ".txt": "text", ".text": "text"}



@dataclass(frozen=True)
class SourceWarning:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass
class ParsedSource:
    kind: str
    passages: list[Passage]
    warnings: list[SourceWarning] = field(default_factory=list)


class SourceSkipped(Exception):
    """The whole file is unusable. ``reason`` is a short code (binary, encoding, empty ...)."""

    def __init__(self, path: str, reason: str, message: str, line: int | None = None) -> None:
        super().__init__(str(SourceWarning(path, line, message)))
        self.path, self.reason, self.detail, self.line = path, reason, message, line


def kind_of(path: str) -> str | None:
    return KINDS.get(PurePosixPath(path).suffix.lower())


def parse_source(path: str, data: bytes, max_bytes: int = MAX_FILE_BYTES) -> ParsedSource:
    """Passages of one file; ``path`` is relative to the knowledge-base folder (for messages)."""
    kind = kind_of(path)
    if kind is None:
        suffix = PurePosixPath(path).suffix or "(none)"
        raise SourceSkipped(path, "unsupported",
                            f"unsupported file type {suffix}; use .csv, .tsv, .md or .txt")
    if len(data) > max_bytes:
        raise too_large(path, len(data), max_bytes)
    if b"\x00" in data[:8192]:
        raise SourceSkipped(path, "binary", "binary file (NUL bytes), not text",
                            line=data[:8192].count(b"\n", 0, data.index(b"\x00")) + 1)
    text = decode(path, data)
    if not text.strip():
        raise SourceSkipped(path, "empty", "file is empty")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if kind == "csv":
        return parse_csv(path, text)
    stem = PurePosixPath(path).stem
    if kind == "markdown":
        return ParsedSource(kind, split_markdown(text, stem))
    return ParsedSource(kind, split_text(text, stem))


def too_large(path: str, size: int, max_bytes: int) -> SourceSkipped:
    return SourceSkipped(path, "too_large", f"file is {size / 1e6:.1f} MB, over the "
                                            f"{max_bytes / 1e6:.1f} MB limit; split it")


def decode(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceSkipped(path, "encoding", f"not UTF-8 (byte 0x{data[exc.start]:02x} at "
                                              f"offset {exc.start}); save the file as UTF-8",
                            line=line) from None


# ----------------------------------------------------------------------------------------------
# CSV

def _delimiter(header_line: str, default: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts.get(default, 0) else default


def parse_csv(path: str, text: str) -> ParsedSource:
    default = "\t" if path.lower().endswith(".tsv") else ","
    delimiter = _delimiter(text.split("\n", 1)[0], default)
    warnings: list[SourceWarning] = []
    passages: list[Passage] = []
    header: list[str] | None = None
    row = 0                          # spreadsheet row number: the header is row 1
    for start, end, cells in _records(text, delimiter):
        row += 1
        if isinstance(cells, Exception):
            warnings.append(SourceWarning(path, start, f"malformed CSV ({cells}); row skipped"))
            continue
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = _header(path, start, cells, warnings)
            continue
        if len(cells) != len(header):
            warnings.append(SourceWarning(
                path, start, f"row has {len(cells)} fields, the header has {len(header)}; "
                             "row skipped"))
            continue
        too_long = [h for h, c in zip(header, cells, strict=True) if len(c) > MAX_CSV_FIELD_CHARS]
        if too_long:
            warnings.append(SourceWarning(path, start, f"field {too_long[0]!r} is longer than "
                                                       f"{MAX_CSV_FIELD_CHARS} characters; "
                                                       "row skipped"))
            continue
        fields = {h: c.strip() for h, c in zip(header, cells, strict=True) if c.strip()}
        body = "\n".join(f"{name}: {value}" for name, value in fields.items())
        passages.append(Passage(
            ordinal=len(passages), title="", text=body,
            locator=f"row {row}", line_start=start, line_end=end, row=row, fields=fields))
    if header is None:
        raise SourceSkipped(path, "empty", "no header row")
    passages = _titled(header, passages)
    if not passages and not warnings:
        warnings.append(SourceWarning(path, None, "header only, no rows"))
    return ParsedSource("csv", passages, _capped(path, warnings))


def _capped(path: str, warnings: list[SourceWarning]) -> list[SourceWarning]:
    """The first MAX_WARNINGS warnings, and one that counts the others."""
    if len(warnings) <= MAX_WARNINGS:
        return warnings
    rest = len(warnings) - MAX_WARNINGS
    return warnings[:MAX_WARNINGS] + [SourceWarning(
        path, None, f"{rest} more rows with problems were skipped (the first "
                    f"{MAX_WARNINGS} are listed); fix the file and ingest again")]


class _RunawayRecord(Exception):
    """A record went on for more than MAX_RECORD_LINES lines: an unbalanced quote, most likely."""

    def __str__(self) -> str:
        return (f"a quoted field runs over more than {MAX_RECORD_LINES} lines; "
                "probably a quote that is never closed")


class _LineFeed:
    """Feeds csv.reader one line at a time from ``start``, and knows where each record began.

    A record may not run over MAX_RECORD_LINES lines, so a stray quote costs at most that many
    lines before parsing goes on with the next line: parsing stays linear in the file's size.
    """

    def __init__(self, lines: list[str], start: int) -> None:
        self.lines, self.record_start, self.next = lines, start, start

    def __iter__(self) -> Iterator[str]:
        while self.next < len(self.lines):
            if self.next - self.record_start >= MAX_RECORD_LINES:
                raise _RunawayRecord()
            self.next += 1
            yield self.lines[self.next - 1] + "\n"


def _records(text: str, delimiter: str
             ) -> Iterator[tuple[int, int, list[str] | csv.Error | _RunawayRecord]]:
    """(first line, last line, cells or the error) per record, in one pass over the lines.

    After a bad record (a quoting error, or an unbalanced quote that would swallow the rest of
    the file) parsing restarts on the line after the bad record's first line, so one bad row
    does not cost the rows after it.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    offset = 0
    while offset < len(lines):
        feed = _LineFeed(lines, offset)
        reader = csv.reader(iter(feed), delimiter=delimiter, strict=True)
        try:
            for cells in reader:
                yield feed.record_start + 1, feed.next, cells
                feed.record_start = feed.next
            return
        except (csv.Error, _RunawayRecord) as exc:
            yield feed.record_start + 1, feed.record_start + 1, exc
            offset = feed.record_start + 1


def _header(path: str, line: int, cells: list[str], warnings: list[SourceWarning]) -> list[str]:
    header: list[str] = []
    for number, cell in enumerate(cells, 1):
        name = cell.strip() or f"column {number}"
        if name in header:
            warnings.append(SourceWarning(path, line, f"column name {name!r} repeats; "
                                                      f"calling it '{name} {number}'"))
            name = f"{name} {number}"
        header.append(name)
    return header


_TITLE_COLUMNS = ("name", "title", "product", "service", "item", "שם", "название", "имя")


def _titled(header: list[str], passages: list[Passage]) -> list[Passage]:
    """The rows with their titles: the value of the column that names them (_name_column)."""
    rows = [p.fields or {} for p in passages]
    column = _name_column(header, rows)
    out = []
    for passage, fields in zip(passages, rows, strict=True):
        title = fields.get(column, "") if column else ""
        if not title:        # this row leaves the name empty: its first filled cell
            title = next((fields[c] for c in header if fields.get(c)), "")
        out.append(replace(passage, title=title))
    return out


def _name_column(header: list[str], rows: list[Mapping[str, str]]) -> str | None:
    """The column that names each row: one called so (_TITLE_COLUMNS), else the first whose
    values are words (not numbers or codes), fill most rows and tell them apart: a category
    column that repeats ("Brakes", "Brakes") makes a poor title, the job next to it a good one."""
    for candidate in _TITLE_COLUMNS:
        for column in header:
            if column.lower() == candidate and any(r.get(column) for r in rows):
                return column
    for column in header:
        values = [r[column] for r in rows if r.get(column)]
        if (2 * len(values) > len(rows) and len(set(values)) == len(values)
                and all(_wordy(v) for v in values)):
            return column
    return None


def _wordy(value: str) -> bool:
    """Mostly letters: a name, not a price, a code ("GEN-01") or a date."""
    letters = sum(c.isalpha() for c in value)
    return letters >= 3 and letters >= 2 * sum(c.isdigit() for c in value)


# ----------------------------------------------------------------------------------------------
# Markdown and text
