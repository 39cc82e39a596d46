"""Customers as CSV: import (upsert by E.164 number) and export.

Columns: phone,name,language,gender,notes,tags (header required, any order; export adds
opted_out,first_contact,last_contact, which import ignores). A phone is normalised to E.164
("whatsapp:+972 50-123 4567" -> "+972501234567"; a national number like 050-1234567 only with
a country code given); a row that cannot be is rejected with its line number, as is a bad
language or gender. An empty cell leaves the stored value as it is.

Cells a spreadsheet would run as a formula (=, +, -, @ first) are written with a leading
apostrophe, except the phone, and read back without it.
"""

from __future__ import annotations

import csv
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Iterable, TextIO

from ..conversation.memory import GENDERS, LANGUAGE, normalize_phone
from ..conversation.names import InvalidName, clean_name

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
IMPORT_COLUMNS = ("phone", "name", "language", "gender", "notes", "tags")
EXPORT_COLUMNS = IMPORT_COLUMNS + ("opted_out", "first_contact", "last_contact")
_GENDER_WORDS = {"f": "f", "female": "f", "woman": "f", "m": "m", "male": "m", "man": "m"}
_FORMULA = ("=", "+", "-", "@")


@dataclass(frozen=True)
class CustomerRow:
    line: int
    phone: str
    name: str = ""
    language: str = ""
    gender: str = ""
    notes: str = ""
    tags: str = ""


@dataclass
class ImportReport:
    rows: list[CustomerRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)      # "line 4: ..."
    warnings: list[str] = field(default_factory=list)
    created: int = 0
    updated: int = 0


def to_e164(raw: str, country_code: str = "") -> str | None:
    """E.164 or None. `country_code` (digits, e.g. "972") turns 0501234567 into +972501234567."""
    value = normalize_phone(raw)
    if value.startswith("0") and country_code:           # national trunk prefix
        value = "+" + country_code.lstrip("+") + value.lstrip("0")
    return value if E164.match(value) else None


def _unformula(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:2] in _FORMULA else value


def read_csv(stream: TextIO, country_code: str = "") -> ImportReport:
    report = ImportReport()
    reader = csv.DictReader(stream)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "phone" not in header:
        report.errors.append("line 1: the header must name a 'phone' column "
                             f"(columns: {','.join(IMPORT_COLUMNS)})")
        return report
    reader.fieldnames = header
    unknown = [h for h in header if h not in EXPORT_COLUMNS]
    if unknown:
        report.warnings.append(f"line 1: ignoring unknown columns {', '.join(unknown)}")
    seen: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        values = {k: _unformula((record.get(k) or "").strip()) for k in IMPORT_COLUMNS}
        phone = to_e164(values["phone"], country_code)
        if phone is None:
            hint = "" if country_code else " (national numbers need --country-code)"
            report.errors.append(f"line {line}: {values['phone']!r} is not a phone number in "
                                 f"E.164 form like +972501234567{hint}")
            continue
        language = values["language"].lower()
        if language and not LANGUAGE.match(language):
            report.errors.append(f"line {line}: language {values['language']!r} is not a code "
                                 "like en, he, ru")
            continue
        gender = _GENDER_WORDS.get(values["gender"].lower(), "?") if values["gender"] else ""
        if gender == "?" or (gender and gender not in GENDERS):
            report.errors.append(f"line {line}: gender {values['gender']!r} must be f or m")
            continue
        tags = ",".join(t.strip() for t in values["tags"].split(",") if t.strip())
        try:
            name = clean_name(values["name"])
        except InvalidName as exc:
            report.errors.append(f"line {line}: name {values['name'][:80]!r}: {exc}")
            continue
        if phone in seen:
            report.warnings.append(f"line {line}: {phone} repeats line {seen[phone]}; the later "
                                   "row wins")
        seen[phone] = line
        report.rows.append(CustomerRow(line, phone, name, language, gender,
                                       values["notes"], tags))
    return report


def upsert(conn: sqlite3.Connection, rows: Iterable[CustomerRow], report: ImportReport) -> None:
    """Insert or update (inside the caller's transaction)."""
    for row in rows:
        existed = conn.execute("SELECT 1 FROM customers WHERE phone = ?",
                               (row.phone,)).fetchone() is not None
        conn.execute(
            "INSERT INTO customers(phone, name, language, gender, notes, tags) "
            "VALUES (?, NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), ?, ?) "
            "ON CONFLICT(phone) DO UPDATE SET "
            "name = COALESCE(NULLIF(excluded.name, ''), customers.name), "
            "language = COALESCE(NULLIF(excluded.language, ''), customers.language), "
            "gender = COALESCE(NULLIF(excluded.gender, ''), customers.gender), "
            "notes = CASE WHEN excluded.notes = '' THEN customers.notes ELSE excluded.notes END, "
            "tags = CASE WHEN excluded.tags = '' THEN customers.tags ELSE excluded.tags END",
            (row.phone, row.name, row.language, row.gender, row.notes, row.tags))
        if existed:
            report.updated += 1
        else:
            report.created += 1


def _safe(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def write_csv(conn: sqlite3.Connection, stream: TextIO) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for row in conn.execute(f"SELECT {', '.join(EXPORT_COLUMNS)} FROM customers "
                            "WHERE phone NOT LIKE 'anonymous:%' ORDER BY id"):  # withheld numbers
        writer.writerow([row["phone"]] + [_safe(row[c]) for c in EXPORT_COLUMNS[1:]])
        count += 1
    return count
