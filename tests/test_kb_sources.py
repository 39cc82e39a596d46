"""Source files -> passages, and the text normalisation both sides of the index share (pure)."""

from __future__ import annotations

import itertools

import pytest

from appliance.kb import sources, text
from appliance.kb.sources import SourceSkipped, parse_source

# ---------------------------------------------------------------------------------------------
# CSV


def test_csv_row_is_one_passage_with_field_names_kept() -> None:
    data = 'sku,name,price\nSA-1,Kettle,"₪1,299"\nSA-2,Fan,₪229\n'.encode()
    parsed = parse_source("products.csv", data)
    assert parsed.kind == "csv" and not parsed.warnings
    first, second = parsed.passages
    assert first.fields == {"sku": "SA-1", "name": "Kettle", "price": "₪1,299"}
    assert first.text == "sku: SA-1\nname: Kettle\nprice: ₪1,299"
    assert first.title == "Kettle"                      # the "name" column
    assert (first.row, first.locator, first.line_start) == (2, "row 2", 2)
    assert (second.row, second.ordinal) == (3, 1)


def test_csv_row_title_is_the_column_that_names_the_rows() -> None:
    """No column is called "name": the title is the first column of words whose values tell the
    rows apart, not a category that repeats nor a code."""
    data = ("Code,Category,Job,Price\n"
            "SV-1,Servicing,Small service,390\n"
            "SV-2,Servicing,Major service,1150\n"
            "BR-1,Brakes,,480\n").encode()
    titles = [p.title for p in parse_source("jobs.csv", data).passages]
    assert titles == ["Small service", "Major service", "BR-1"]   # empty cell: first filled


def test_csv_row_title_falls_back_to_the_first_filled_cell() -> None:
    data = "Zone,Fee\nA,120\nA,150\n".encode()
    assert [p.title for p in parse_source("zones.csv", data).passages] == ["A", "A"]


def test_malformed_csv_rows_are_skipped_with_their_line_and_the_rest_kept() -> None:
    data = (b'sku,name,price\n'
            b'A-1,Widget,5\n'
            b'A-2,"Bad "quote",5\n'          # line 3: quoting error
            b'A-3,Gadget\n'                  # line 4: too few fields
            b'\n'
            b'A-4,Thing,7,extra\n'           # line 6: too many fields
            b'A-5,"unterminated,9\n'        # line 7: quote never closed
            b'A-6,Last,10\n')
    parsed = parse_source("p.csv", data)
    assert [p.fields["sku"] for p in parsed.passages] == ["A-1", "A-6"]
    assert [w.line for w in parsed.warnings] == [3, 4, 6, 7]
    assert all(w.path == "p.csv" for w in parsed.warnings)
    assert "p.csv:4: row has 2 fields, the header has 3" in str(parsed.warnings[1])
    assert parsed.passages[1].row == 8


def test_csv_multiline_cell_keeps_row_and_line_numbers() -> None:
    data = b'name,notes\nA,"two\nlines"\nB,ok\n'
    a, b = parse_source("x.csv", data).passages
    assert (a.row, a.line_start, a.line_end) == (2, 2, 3)
    assert (b.row, b.line_start) == (3, 4)
    assert a.fields["notes"] == "two\nlines"


@pytest.mark.parametrize("name, data", [
    ("semi.csv", "name;price\nKettle;199\n".encode()),
    ("tabs.tsv", "name\tprice\nKettle\t199\n".encode()),
    ("bom.csv", "\ufeffname,price\r\nKettle,199\r\n".encode()),
])
def test_csv_dialects(name: str, data: bytes) -> None:
    (passage,) = parse_source(name, data).passages
    assert passage.fields == {"name": "Kettle", "price": "199"}


def test_csv_header_problems() -> None:
    parsed = parse_source("x.csv", b"name,,name\na,b,c\n")
    assert parsed.passages[0].fields == {"name": "a", "column 2": "b", "name 3": "c"}
    assert "repeats" in parsed.warnings[0].message
    header_only = parse_source("x.csv", b"name,price\n")
    assert header_only.passages == [] and "no rows" in header_only.warnings[0].message


# ---------------------------------------------------------------------------------------------
# Markdown and text

MD = """---
title: front matter is not content
---
# Shop

Intro paragraph.

## Hours

Sun-Thu 09:00-19:00.

### Friday
Fri 09:00-14:00.

```
# a comment in a code block, not a heading
```

## Empty section
## Prices
Kettle ₪199.
"""


def test_markdown_sections_carry_their_heading_path() -> None:
    passages = parse_source("shop.md", MD.encode()).passages
    assert [p.heading for p in passages] == ["Shop", "Shop > Hours", "Shop > Hours > Friday",
                                             "Shop > Prices"]
    assert passages[0].text == "Intro paragraph."
    assert "# a comment in a code block" in passages[2].text
    assert passages[3].line_start == 21 and passages[3].locator == "Shop > Prices"
    assert all("front matter" not in p.text for p in passages)


def test_text_before_any_heading_uses_the_file_name() -> None:
    (passage,) = parse_source("notes.md", b"Just text.\n").passages
    assert passage.heading is None and passage.title == "notes"
    assert passage.locator == "lines 1-1"


def test_long_sections_are_split_with_overlap_and_bounded_size() -> None:
    sentences = [f"Fact number {i} is about appliance model X{i} and its price." for i in range(80)]
    paragraphs = ["\n".join(sentences[i:i + 4]) for i in range(0, 80, 4)]
    body = "# Big\n\n" + "\n\n".join(paragraphs) + "\n\n" + " ".join(sentences) + "\n"
    passages = parse_source("big.md", body.encode()).passages
    assert len(passages) > 5
    assert all(len(p.text) <= sources.MAX_CHARS for p in passages)
    assert all(p.heading == "Big" for p in passages)
    joined = " ".join(p.text for p in passages)
    assert all(s in joined for s in sentences)           # nothing lost
    for before, after in itertools.pairwise(passages):    # each repeats the previous tail
        flat_before, flat_after = " ".join(before.text.split()), " ".join(after.text.split())
        assert flat_after[:40] in flat_before[-sources.OVERLAP_CHARS - 40:]


def test_huge_word_without_spaces_is_cut() -> None:
    passages = parse_source("blob.txt", ("x" * 5000).encode()).passages
    assert len(passages) >= 5 and all(len(p.text) <= sources.MAX_CHARS for p in passages)


def test_text_file_paragraphs_and_line_ranges() -> None:
    passages = parse_source("notes.txt", b"First para\nstill first.\n\nSecond.\n").passages
    assert len(passages) == 1                     # small paragraphs are packed together
    assert passages[0].locator == "lines 1-4" and passages[0].title == "notes"


# ---------------------------------------------------------------------------------------------
# Whole files that cannot be used


@pytest.mark.parametrize("name, data, reason, line", [
    ("latin1.md", "line one\ncaf\xe9\n".encode("latin-1"), "encoding", 2),
    ("hebrew-1255.csv", "name\n\u05e9\u05dc\u05d5\u05dd\n".encode("cp1255"), "encoding", 2),
    ("image.txt", b"PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary", 3),
    ("empty.md", b"", "empty", None),
    ("blank.txt", b"  \n\n\t\n", "empty", None),
    ("photo.jpg", b"\xff\xd8\xff", "unsupported", None),
    ("README", b"text", "unsupported", None),
])
def test_unusable_files_say_why_and_where(name: str, data: bytes, reason: str,
                                          line: int | None) -> None:
    with pytest.raises(SourceSkipped) as caught:
        parse_source(name, data)
    assert caught.value.reason == reason
    assert caught.value.line == line
    assert name in str(caught.value)


def test_enormous_file_is_refused() -> None:
    with pytest.raises(SourceSkipped) as caught:
        parse_source("huge.txt", b"a" * 2000, max_bytes=1000)
    assert caught.value.reason == "too_large" and "limit" in str(caught.value)


def test_content_hash_follows_the_embedded_text() -> None:
    a = parse_source("x.csv", b"name,price\nKettle,199\n").passages[0]
    b = parse_source("y.csv", b"name,price\n\nKettle,199\n").passages[0]
    c = parse_source("x.csv", b"name,price\nKettle,209\n").passages[0]
    assert a.content_hash() == b.content_hash() != c.content_hash()


# ---------------------------------------------------------------------------------------------
# Text normalisation


def test_normalize_folds_case_accents_points_and_gershayim() -> None:
    assert text.normalize("Café DE'LONGHI") == "cafe delonghi"
    assert text.normalize("שָׁלוֹם") == "שלום"                 # Hebrew points removed
    assert text.normalize("מע\u05f4מ") == "מעמ"                 # gershayim inside a word
    assert text.normalize("Ёлка") == "елка"


def test_query_terms_drop_stopwords_in_three_languages_and_keep_codes() -> None:
    assert text.query_terms("What's the price of SA-WM-1042?") == [
        "price", "sa", "wm", "1042", "sawm1042"]
    assert text.query_terms("מה המחיר של המקרר?") == ["המחיר", "המקרר"]
    assert text.query_terms("Сколько стоит доставка?") == ["стоит", "доставка"]
    assert text.query_terms("hello, thanks!") == []


def test_variants_for_hebrew_prefixes_and_russian_stems() -> None:
    assert "משלוח" in text.variants("המשלוח")
    assert "מקרר" in text.variants("והמקררים")
    assert text.variants("доставку") == ("доста",)
    assert text.variants("kettle") == ()


def test_fts_quote_escapes_everything() -> None:
    assert text.fts_quote('a"b') == '"a""b"'
    assert text.fts_quote("NEAR") == '"NEAR"'


@pytest.mark.parametrize("a, b, limit, expected", [
    ("warranty", "warrenty", 1, True),
    ("retrun", "return", 1, True),         # transposition
    ("delivr", "deliver", 1, True),
    ("kettle", "bottle", 1, False),
    ("installation", "instalation", 2, True),
])
def test_edit_distance(a: str, b: str, limit: int, expected: bool) -> None:
    assert text.edit_distance_at_most(a, b, limit) is expected


def test_term_matches_allows_typos_word_forms_but_not_code_typos() -> None:
    words = frozenset({"returns", "delivery", "sa", "wm", "1042", "משלוח"})
    assert text.term_matches("retrun", words)            # typo + ending
    assert text.term_matches("delivr", words)
    assert text.term_matches("המשלוח", words)             # prefix letter
    assert not text.term_matches("1043", words)          # digits must match exactly
    assert not text.term_matches("bicycle", words)


def test_csv_unclosed_quote_costs_a_bounded_number_of_lines(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Issue 13/15: a broken CSV used to be re-parsed from each bad row to the end (O(n^2))."""
    fed = 0
    real_iter = sources._LineFeed.__iter__

    def counting(self: sources._LineFeed):  # type: ignore[no-untyped-def]
        nonlocal fed
        for line in real_iter(self):
            fed += 1
            yield line

    monkeypatch.setattr(sources._LineFeed, "__iter__", counting)
    rows = 3000
    bad = "".join(f'A{i},"never closed,{i}\n' if i % 2 else f"B{i},ok,{i}\n"
                  for i in range(rows))
    parsed = parse_source("bad.csv", ("sku,name,price\n" + bad).encode())
    assert fed <= (rows + 1) * (sources.MAX_RECORD_LINES + 1)     # linear, not quadratic
    assert len(parsed.warnings) == sources.MAX_WARNINGS + 1
    assert "more rows with problems were skipped" in parsed.warnings[-1].message
    assert parsed.warnings[0].line == 3


def test_csv_runaway_quote_is_reported_and_the_rest_kept() -> None:
    data = 'sku,name\nA,"never closed\n' + "".join(f"B{i},ok\n" for i in range(100))
    parsed = parse_source("r.csv", data.encode())
    assert len(parsed.passages) == 100 and parsed.passages[0].row == 3
    (warning,) = parsed.warnings
    assert warning.line == 2 and "never closed" in warning.message


def test_hyphenated_words_are_also_one_word() -> None:
    assert text.codes("panoramic x-ray, check-up") == ["xray", "checkup"]
    assert "xray" in text.query_terms("xray cost")
    assert text.codes("sw-wm-8123 and 3.5") == ["swwm8123", "35"]
