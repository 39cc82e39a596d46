"""Smoke test of the benchmark runner's pieces (bench/). No timing is asserted: benchmarks are
not tests. One real call goes through the benchmark rig with the tiny test models and the
instant stand-ins; the report is rendered from synthetic numbers."""

from __future__ import annotations

import json

import pytest

from bench import report
from bench.harness import Rig, Setup, _dry_gaps, turn
from bench.models import BenchModels
from bench.resample_quality import measure


def _turn(ms: float, **row) -> dict:
    base = {"endpoint_wait_ms": 300.0, "stt_ms": 60.0, "llm_ttft_ms": 300.0,
            "first_clause_ms": 320.0, "tts_first_audio_ms": 80.0, "overhead_ms": 10.0,
            "turn_latency_ms": ms - 20}
    return {"scenario": "s", "wav": "en_yes.wav", "call_sid": "CA1", "caller_turn_ms": ms,
            "caller_heard_ms": ms + 200, "row": dict(base, **row), "answer_ms": ms - 20,
            "filler": False, "eos_lag_ms": 20.0, "dry_gaps": [], "clear_ms": 200.0,
            "server_clear_ms": 150.0, "early_turns": 0}


def synthetic_results() -> dict:
    turns = [_turn(x) for x in (550, 610, 700, 980)]
    scenario = {"label": "cloud", "startup_s": 3.0, "turns": turns}
    levels = [{"calls": n, "turns": [_turn(600 + 100 * n)], "peak_rss_mb": 1000 + 20 * n,
               "stagger_s": 1.0, "turns_per_call": 1, "label": "cloud, whisper tiny"}
              for n in (1, 2, 4)]
    return {"meta": {"command": "python -m bench.run", "date": "2026-01-01 00:00",
                     "machine": "test", "load_before": "0", "load_after": "0",
                     "duration_min": 1.0, "models": {"voice": "test"}, "notes": ["n"]},
            "scenarios": {"cloud300": scenario, "local": scenario, "instant": scenario,
                          "bargein": scenario},
            "concurrency": levels, "resampling": measure(), "present": ["kb.md"],
            "kb": {"table": ["| a | b |", "|---|---|", "| 1 | 2 |"]}}


def test_report_renders_tables_and_a_png(tmp_path) -> None:
    res = synthetic_results()
    report.write(res, tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Against the targets" in text and "## Simultaneous calls" in text
    assert "stt" in text and "barge_in_latency" in text and "[kb.md](kb.md)" in text
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "raw.json").read_text())["meta"]["machine"] == "test"
    summary = report.concurrency_summary(res["concurrency"])
    assert [r["calls"] for r in summary["rows"]] == [1, 2, 4]
    assert summary["mb_per_call"] == pytest.approx(20.0)


def test_held_back_by_names_the_stages_over_budget() -> None:
    m = report.metrics([_turn(900, stt_ms=700.0)])
    assert report.held_back_by(m, report.BUDGET)[0].startswith("stt 700 ms")


def test_dry_gaps_are_underruns_of_the_playback() -> None:
    frames = [{"event": "media", "_at": 0.02 * i} for i in range(10)]
    frames += [{"event": "mark", "_at": 0.21}, {"event": "media", "_at": 0.50},
               {"event": "media", "_at": 0.52}]
    assert _dry_gaps(frames, 0.0, 10.0) == [(300.0, True)]


def test_the_appliance_resampler_aliases_less_than_naive_decimation() -> None:
    rows = measure()["aliasing"]
    assert all(r["appliance Resampler (soxr HQ)"] < r["naive decimation"] for r in rows)


async def test_one_call_through_the_benchmark_rig(tmp_path, test_models) -> None:
    models = BenchModels(whisper={"tiny": test_models.whisper_dir,
                                  "base": test_models.whisper_dir},
                         chat={"test": test_models.chat_gguf},
                         embedding=test_models.embedding_gguf, voice=test_models.piper_voice)
    setup = Setup(whisper="tiny", chat="test", ttft_s=0.0, instant="all")
    async with Rig(setup, models, tmp_path) as rig:
        (measured,) = await rig.call([turn("en_yes.wav")], "smoke")
        assert rig.rss_mb() > 0
    assert measured.caller_turn_ms is not None and measured.caller_heard_ms is not None
    assert measured.row["endpoint_wait_ms"] is not None
    assert measured.row["model"] == "instant"
