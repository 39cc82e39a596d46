"""`appliance kb ingest | search | stats` through the real command line."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from appliance import cli
from appliance.kb.commands import ProgressBar
from appliance.kb.index import IngestProgress
from tests.support.kb import KB_DIR, embedding_model_path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    shutil.copytree(KB_DIR, tmp_path / "kb")
    ini = tmp_path / "config.ini"
    ini.write_text(
        "[twilio]\nvalidate_signatures = false\n"
        f"[kb]\ndirectory = kb\nembedding_model = {embedding_model_path()}\n"
        "[storage]\ndatabase = data/appliance.db\n", encoding="utf-8")
    return ini


def run(config: Path, *argv: str) -> int:
    return cli.main(["--config", str(config), "kb", *argv])


def test_ingest_search_stats(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "ingest") == 0
    out = capsys.readouterr().out
    assert "6 added, 0 updated, 0 removed, 0 unchanged, 0 skipped" in out
    assert "added     products.csv" in out and "embedded" in out

    (config.parent / "kb" / "notes.txt").write_bytes(b"caf\xe9\n")
    assert run(config, "ingest") == 0
    out = capsys.readouterr().out
    assert "0 added, 0 updated, 0 removed, 6 unchanged, 1 skipped" in out
    assert "skipped   notes.txt: encoding: not UTF-8" in out

    assert run(config, "search", "How much is the Dyson V12?") == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("1. score ") and "products.csv row 22" in first
    assert "similarity 0." in first and "bm25#1" in first and "  rerank " in first
    assert "Dyson V12 Detect Slim" in out

    assert run(config, "search", "Do you sell cars?") == 0
    assert capsys.readouterr().out.startswith("no answer in the knowledge base")

    assert run(config, "search", "--json", "-k", "2", "--mode", "bm25", "delivery Eilat") == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) <= 2 and lines[0]["source"] == "delivery.md"
    assert lines[0]["ranks"] == {"bm25": 1} and lines[0]["similarity"] is None
    assert lines[0]["rerank_score"] is None          # words only: nothing to rerank with

    assert run(config, "stats") == 0
    out = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in out and "(384 dimensions)" in out
    assert "files        6" in out and "products.csv" in out


def test_missing_folder_is_an_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "ingest", str(config.parent / "nope")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_progress_bar_draws_on_a_terminal_only() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar(stream, width=10)
    bar(IngestProgress(1, 4, "products.csv"))
    bar(IngestProgress(1, 4, "products.csv", 16, 32))
    bar(IngestProgress(4, 4, ""))
    assert stream.getvalue().startswith("\r[##--------] 1/4 products.csv")
    assert "1/4 products.csv 16/32 passages" in stream.getvalue()
    assert "[##########] 4/4" in stream.getvalue() and stream.getvalue().endswith("\n")
    quiet = io.StringIO()
    ProgressBar(quiet)(IngestProgress(1, 4, "x"))
    assert quiet.getvalue() == ""


def test_eval_on_another_business_without_twilio_settings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Signature checking on (the default) and no public_url: the kb commands still run."""
    business = Path(__file__).resolve().parent / "data" / "kb_businesses" / "dental"
    shutil.copytree(business / "docs", tmp_path / "kb")
    ini = tmp_path / "config.ini"
    ini.write_text(f"[kb]\ndirectory = kb\nembedding_model = {embedding_model_path()}\n"
                   "[storage]\ndatabase = data/appliance.db\n", encoding="utf-8")
    questions = tmp_path / "mine.jsonl"
    questions.write_text(
        '{"question": "how much is a root canal", '
        '"expected": [{"file": "treatments.csv", "row": 5}]}\n'
        '{"question": "what time do you close on thursday", '
        '"expected": [{"file": "about.md", '
        '"heading": "About Bright Smile Dental > Accessibility"}]}\n'
        '{"question": "do you sell cars?", "expected": null}\n', encoding="utf-8")
    assert run(ini, "eval", str(questions)) == 2              # nothing ingested yet
    assert "run `appliance kb ingest` first" in capsys.readouterr().err
    assert run(ini, "ingest") == 0
    capsys.readouterr()
    assert run(ini, "eval", str(questions)) == 0
    out = capsys.readouterr().out
    assert "3 questions from" in out
    assert "recall@3: 50.0% (1/2 answerable questions" in out
    assert "abstention: 100.0% (1/1" in out
    assert "missed (line 2): 'what time do you close on thursday': got hours.md Opening " \
           "hours > Clinic hours" in out
    questions.write_text("{broken\n", encoding="utf-8")
    assert run(ini, "eval", str(questions)) == 2
    assert "mine.jsonl:1: not JSON" in capsys.readouterr().err
    # The server itself still insists on the Twilio settings.
    from appliance.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="public_url"):
        load_settings(ini)
    assert load_settings(ini, require_twilio=False).server.public_url == ""
