"""capacity_offline.md keeps a section per local model: a rerun of one model rewrites only its
own section (bench/sections.py, used by bench/capacity_bench.py's save)."""

from __future__ import annotations

import json

from pathlib import Path

import pytest

from bench import capacity_bench, sections

ROOT = Path(__file__).resolve().parents[1]
GEMMA = capacity_bench.OFFLINE_HEADINGS["gemma3-270m"]
QWEN = capacity_bench.OFFLINE_HEADINGS["qwen0.5b"]

DOC = f"""# Whole offline calls

What the runs are.

## {GEMMA}
gemma run 1

| calls | p95 |
|---|---|
| 1 | 1788 |


## {QWEN}
qwen run 1


## Notes

- written by hand
"""


def test_a_rerun_replaces_only_its_own_section() -> None:
    merged = sections.merge_section(DOC, QWEN, "qwen run 2\n")
    assert merged == DOC.replace("qwen run 1", "qwen run 2")
    preamble, parts = sections.split(merged)
    assert preamble == "# Whole offline calls\n\nWhat the runs are.\n\n"
    assert [h for h, _ in parts] == [GEMMA, QWEN, "Notes"]
    assert "| 1 | 1788 |" in dict(parts)[GEMMA]


def test_a_new_model_goes_before_the_notes() -> None:
    without_qwen = DOC.replace(f"## {QWEN}\nqwen run 1\n\n\n", "")
    merged = sections.merge_section(without_qwen, QWEN, "qwen run 1\n")
    assert merged == DOC


def test_a_missing_file_gets_the_title() -> None:
    merged = sections.merge_section("", GEMMA, "gemma\n", "# Title")
    assert merged == f"# Title\n\n## {GEMMA}\ngemma\n"


def test_the_committed_report_round_trips() -> None:
    text = (ROOT / "bench" / "results" / "capacity_offline.md").read_text()
    preamble, parts = sections.split(text)
    assert sections.join(preamble, parts) == text
    for heading in (GEMMA, QWEN):
        body = dict(parts)[heading].split("\n", 1)[1]
        assert sections.merge_section(text, heading, body) == text


def _level(calls: int) -> dict:
    turn = {"caller_turn_ms": 1400.0, "dry_gaps": [], "row": {"stt_ms": 50.0,
                                                               "tts_first_audio_ms": 120.0}}
    return {"calls": calls, "turns": [turn] * (2 * calls), "peak_rss_mb": 1100.0 + 50 * calls,
            "cpu_s_per_turn": 7.5, "rss_per_call_mb": 60.0, "load_before": 0.5,
            "load_after": 0.7}


def test_the_bench_save_keeps_the_other_model(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity_bench, "RESULTS", tmp_path)
    (tmp_path / "capacity_offline.md").write_text(DOC)
    info = {"cores": 2, "turns": 2, "date": "2026-12-02 06:00", "startup_s": 8.0,
            "base_rss_mb": 1000.0, "setup": "the gemma set-up"}
    text = capacity_bench.save([_level(1), _level(2)], info, 0.0, "gemma3-270m")
    written = (tmp_path / "capacity_offline.md").read_text()
    preamble, parts = sections.split(written)
    assert preamble == "# Whole offline calls\n\nWhat the runs are.\n\n"
    assert [h for h, _ in parts] == [GEMMA, QWEN, "Notes"]
    assert dict(parts)[GEMMA] == f"## {GEMMA}\n{text}\n"
    assert "the gemma set-up" in text and "gemma run 1" not in written
    assert dict(parts)[QWEN] == f"## {QWEN}\nqwen run 1\n\n\n"
    assert written.endswith("## Notes\n\n- written by hand\n")


def test_the_json_keeps_each_models_last_run(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity_bench, "RESULTS", tmp_path)
    old = {"info": {"setup": "a run from before the file was keyed"}, "levels": []}
    (tmp_path / "capacity_offline.json").write_text(json.dumps(old))
    info = {"cores": 2, "turns": 2, "date": "2026-12-02 06:00", "startup_s": 8.0,
            "base_rss_mb": 1000.0, "setup": "set-up"}
    capacity_bench.save([_level(1)], dict(info), 0.0, "gemma3-270m")
    capacity_bench.save([_level(1), _level(2)], dict(info), 0.0, "qwen0.5b")
    capacity_bench.save([_level(2)], dict(info), 0.0, "gemma3-270m")
    runs = json.loads((tmp_path / "capacity_offline.json").read_text())
    assert list(runs) == ["earlier run", "gemma3-270m", "qwen0.5b"]
    assert runs["earlier run"] == old
    assert [lv["calls"] for lv in runs["gemma3-270m"]["levels"]] == [2]
    assert [lv["calls"] for lv in runs["qwen0.5b"]["levels"]] == [1, 2]


def test_a_fresh_report_keeps_the_hand_written_notes() -> None:
    old = "# Report\n\nold table\n\n## Notes\n\n- by hand\n"
    assert sections.with_notes("# Report\n\nnew table\n", old) == \
        "# Report\n\nnew table\n\n## Notes\n\n- by hand\n"
    assert sections.with_notes("# Report\n\nnew table\n", "# Report\n\nold\n") == \
        "# Report\n\nnew table\n"
