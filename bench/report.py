"""Numbers -> bench/results/RESULTS.md and latency.png. Pure functions of the results dict that
bench/run.py collects (also written as raw.json), so the report can be rebuilt without a rerun:
``python -m bench.report bench/results/raw.json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = {"cloud_p50": 600, "cloud_p95": 900, "local_p50": 1200, "overhead_p50": 30,
           "clear_p95": 250, "concurrency": 6, "concurrency_p95": 1500}
# The budget of shared/notes/latency.md for a cloud turn (ms per stage). For the local model
# the LLM gets what the 1.2 s target leaves after the other stages.
BUDGET = {"eos_offset": 50, "endpoint_wait": 300, "stt": 80, "llm_ttft": 300,
          "clause_wait": 50, "tts_first_audio": 50, "overhead": 30}
SCENARIO_ORDER = ("cloud300", "cloud800", "cloud300_prefill", "local", "instant_engine",
                  "instant")
SHORT = {"cloud300": "cloud, 300 ms", "cloud800": "cloud, 800 ms",
         "cloud300_prefill": "cloud 300 ms,\nlocal prefill on", "local": "local 1.5B",
         "instant_engine": "instant speech,\nreal engine", "instant": "instant engines"}
STAGE_LABELS = {
    "eos_offset": "end-of-speech detection offset (VAD vs the audio)",
    "endpoint_wait": "endpoint_wait", "stt": "stt", "llm_ttft": "llm first token",
    "clause_wait": "first clause (after the first token)",
    "tts_first_audio": "tts first audio", "overhead": "overhead (stored overhead_ms)"}


# -- statistics ------------------------------------------------------------------------------

def stats(values: Iterable[float | None]) -> dict[str, float | int | None]:
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return {"n": 0, "median": None, "p95": None, "min": None, "max": None}
    return {"n": len(v), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
            "min": float(v.min()), "max": float(v.max())}


def _row(t: dict[str, Any], key: str) -> float | None:
    return (t.get("row") or {}).get(key)


def stage_values(turn: dict[str, Any]) -> dict[str, float | None]:
    """The additive parts of a turn (ms): their sum is the caller's turn_latency (to within the
    loopback transport). When a "one moment" filler went out first, the stored
    tts_first_audio_ms is measured to the filler's audio (it can be negative): then the stages
    are those of the answer, tts first audio being what is left of the answer latency (the
    overhead included)."""
    ttft, clause = _row(turn, "llm_ttft_ms"), _row(turn, "first_clause_ms")
    if turn.get("filler"):
        parts = [_row(turn, k) for k in ("endpoint_wait_ms", "stt_ms")] + [clause]
        rest = (None if None in parts or turn.get("answer_ms") is None
                else turn["answer_ms"] - sum(parts))
        return {"eos_offset": turn.get("eos_lag_ms"),
                "endpoint_wait": _row(turn, "endpoint_wait_ms"), "stt": _row(turn, "stt_ms"),
                "llm_ttft": ttft,
                "clause_wait": None if ttft is None or clause is None else clause - ttft,
                "tts_first_audio": rest, "overhead": None}
    return {
        "eos_offset": turn.get("eos_lag_ms"),
        "endpoint_wait": _row(turn, "endpoint_wait_ms"),
        "stt": _row(turn, "stt_ms"),
        "llm_ttft": ttft,
        "clause_wait": None if ttft is None or clause is None else clause - ttft,
        "tts_first_audio": _row(turn, "tts_first_audio_ms"),
        "overhead": _row(turn, "overhead_ms"),
    }


def metrics(turns: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {"turn_latency": stats(t["caller_turn_ms"] for t in turns),
           "heard_latency": stats(t["caller_heard_ms"] for t in turns),
           "answer": stats(t.get("answer_ms") for t in turns)}
    stages = [stage_values(t) for t in turns]
    for key in STAGE_LABELS:
        out[key] = stats(s[key] for s in stages)
    out["server_turn_latency"] = stats(_row(t, "turn_latency_ms") for t in turns)
    return out


def held_back_by(m: dict[str, dict[str, Any]], budget: dict[str, float]) -> list[str]:
    """Stages whose median exceeds their budget, largest excess first."""
    over = []
    for key, limit in budget.items():
        med = m.get(key, {}).get("median")
        if med is not None and med > limit:
            over.append((med - limit, f"{STAGE_LABELS[key]} {med:.0f} ms (budget {limit:.0f})"))
    return [text for _, text in sorted(over, reverse=True)]


# -- formatting ------------------------------------------------------------------------------

def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _spread(s: dict[str, Any]) -> str:
    return "-" if s["min"] is None else f"{s['min']:.0f}-{s['max']:.0f}"


def _stat_cells(s: dict[str, Any]) -> str:
    return f"{_ms(s['median'])} | {_ms(s['p95'])} | {_spread(s)} | {s['n']}"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def concurrency_summary(levels: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for level in levels:
        turns = level["turns"]
        lat = stats(t["caller_turn_ms"] for t in turns)
        gaps = [g for t in turns for g in t.get("dry_gaps", [])]
        mid = [g for g in gaps if not g[1]]
        missing = sum(1 for t in turns if t["caller_turn_ms"] is None)
        ok = (lat["p95"] is not None and lat["p95"] <= TARGETS["concurrency_p95"]
              and not gaps and not missing)
        rows.append({"calls": level["calls"], "latency": lat, "gaps": len(gaps),
                     "mid_piece_gaps": len(mid), "longest_gap": max((g[0] for g in gaps),
                                                                    default=None),
                     "missing": missing, "peak_rss_mb": level["peak_rss_mb"], "ok": ok,
                     "answer": stats(t.get("answer_ms") for t in turns),
                     "fillers": sum(1 for t in turns if t.get("filler")),
                     "stt": stats(_row(t, "stt_ms") for t in turns),
                     "tts": stats(_row(t, "tts_first_audio_ms") for t in turns)})
    held = 0
    for r in rows:
        if not r["ok"]:
            break
        held = r["calls"]
    calls = np.array([r["calls"] for r in rows], dtype=float)
    rss = np.array([r["peak_rss_mb"] for r in rows], dtype=float)
    slope = float(np.polyfit(calls, rss, 1)[0]) if len(rows) >= 2 else None
    return {"rows": rows, "held": held, "mb_per_call": slope}


def render_markdown(res: dict[str, Any]) -> str:
    meta, sc = res["meta"], res["scenarios"]
    m = {k: metrics(v["turns"]) for k, v in sc.items()}
    L: list[str] = []
    add = L.append
    add("# Call latency, barge-in and capacity on a 2-core box")
    add("")
    add(f"`{meta['command']}` on {meta['date']} ({meta['duration_min']:.1f} min). "
        f"Machine: {meta['machine']}. Load average before / after: {meta['load_before']} / "
        f"{meta['load_after']}.")
    add("")
    add("Every call is a real call to the real server over the Media Streams protocol, played "
        "in real time by the Twilio stand-in of `appliance simulate` (signed webhook, signed "
        "WebSocket, 20 ms mu-law frames from shared/audio, playback at real time with mark "
        "echoes, `clear`); the appliance runs in its own process with the shipped `config.ini` "
        "(only model paths, port, database and URL replaced). Definitions: "
        "[shared/notes/latency.md](../../../shared/notes/latency.md). turn_latency and "
        "heard_latency are measured on the caller's side from the end of speech in the audio "
        "(`speech_end_s` of the manifest); the stages come from the server's `call_turns` row.")
    add("")
    add("## Against the targets")
    add("")
    add("| item | target | median | p95 | min-max | n | verdict | what holds it back |")
    add("|---|---|---:|---:|---:|---:|---|---|")
    budget_local = dict(BUDGET, llm_ttft=TARGETS["local_p50"] - sum(
        v for k, v in BUDGET.items() if k != "llm_ttft"))
    for key, label in (("cloud300", "turn_latency, cloud (first token 300 ms)"),
                       ("cloud800", "turn_latency, cloud (first token 800 ms)")):
        if key not in m:
            continue
        s = m[key]["turn_latency"]
        ok = None if s["median"] is None else (s["median"] <= TARGETS["cloud_p50"]
                                                and s["p95"] <= TARGETS["cloud_p95"])
        budget = dict(BUDGET, llm_ttft=800) if key == "cloud800" else BUDGET
        why = "; ".join(held_back_by(m[key], budget)) if not ok else ""
        if key == "cloud800" and not ok:
            why = "llm first token is 800 ms by construction; also: " + why
        if key == "cloud300" and "cloud300_prefill" in m:
            on = m["cloud300_prefill"]["turn_latency"]
            why += (f". With the local model's background prefill forced on (the previous "
                    f"default): median {_ms(on['median'])}, p95 {_ms(on['p95'])} ms "
                    f"(n={on['n']})")
        add(f"| {label} | p50 <= 600 ms, p95 <= 900 ms | {_stat_cells(s)} | {_verdict(ok)} "
            f"| {why} |")
    if "local" in m:
        labels = (("turn_latency", ("turn_latency, local model (first audio: may be the "
                                    "\"one moment\" filler)")),
                  ("answer", ("answer latency, local model (first audio of the answer itself, "
                              "server side)")))
        for metric, label in labels:
            s = m["local"][metric]
            ok = None if s["median"] is None else s["median"] <= TARGETS["local_p50"]
            why = "; ".join(held_back_by(m["local"], budget_local)) if not ok else ""
            add(f"| {label} | p50 <= 1.2 s | {_stat_cells(s)} | {_verdict(ok)} | {why} |")
    if "instant" in m:
        s = m["instant"]["overhead"]
        ok = None if s["median"] is None else s["median"] < TARGETS["overhead_p50"]
        add(f"| appliance overhead, instant engines (stored overhead_ms) | p50 < 30 ms | "
            f"{_stat_cells(s)} | {_verdict(ok)} | |")
        s = stats(t["caller_turn_ms"] - _row(t, "endpoint_wait_ms") - (t["eos_lag_ms"] or 0)
                  for t in sc["instant"]["turns"]
                  if t["caller_turn_ms"] is not None and _row(t, "endpoint_wait_ms") is not None)
        ok = None if s["median"] is None else s["median"] < TARGETS["overhead_p50"]
        add(f"| appliance overhead, instant engines, caller side (turn_latency - endpoint_wait - "
            f"end-of-speech offset) | p50 < 30 ms | {_stat_cells(s)} | {_verdict(ok)} | |")
    if "bargein" in sc:
        s = stats(t.get("clear_ms") for t in sc["bargein"]["turns"])
        ok = None if s["p95"] is None else s["p95"] <= TARGETS["clear_p95"]
        add(f"| barge_in_latency (speech onset over the bot -> `clear` received) | <= 250 ms | "
            f"{_stat_cells(s)} | {_verdict(ok)} | {'' if ok else _bargein_why(sc['bargein'])} |")
    conc = concurrency_summary(res["concurrency"]) if res.get("concurrency") else None
    if conc:
        ok = conc["held"] >= TARGETS["concurrency"]
        add(f"| simultaneous calls ({res['concurrency'][0]['label']}): p95 turn_latency <= "
            f"1.5 s and no audio gap | >= 6 | {conc['held']} | | | | {_verdict(ok)} | "
            f"{'' if ok else _concurrency_why(conc)} |")
    if conc and conc["mb_per_call"] is not None:
        add(f"| memory per additional call (slope of peak RSS) | | {conc['mb_per_call']:.1f} MB "
            f"| | | | | |")
    for cells in (res.get("kb") or {}).get("hybrid", []):
        try:
            passages, _, threads, med, p95 = cells[:5]
        except ValueError:
            continue
        add(f"| knowledge-base query at {passages} passages (hybrid search, question embedding "
            f"included; {threads} query thread(s); from [kb.md](kb.md)) | | {med} | {p95} | | | "
            f"| all-MiniLM-L6-v2; see kb.md for the default model's shape |")
    rs = res.get("resampling")
    if rs:
        sweep = next(r for r in rs["aliasing"] if r["signal"].startswith("sweep"))
        add(f"| energy aliased below 4 kHz, 22.05 -> 8 kHz, 4-11 kHz sweep (appliance "
            f"Resampler) | | {sweep['appliance Resampler (soxr HQ)']:.0f} dB | | | | | naive "
            f"decimation {sweep['naive decimation']:.0f} dB, audioop.ratecv "
            f"{sweep['audioop.ratecv']:.0f} dB |")
    add("")
    add("p95 is interpolated between samples (numpy's default); with n under 20 it is close to "
        "the maximum.")
    add("")
    _scenarios(L, res, m)
    _per_utterance(L, sc)
    _bargein(L, sc)
    if conc:
        _concurrency(L, conc, res["concurrency"])
    _resampling(L, rs)
    _others(L, res)
    _models(L, meta)
    return "\n".join(L) + "\n"


def _bargein_why(scenario: dict[str, Any]) -> str:
    server = stats(t.get("server_clear_ms") for t in scenario["turns"])
    return (f"of which the server's own path (VAD onset on the media clock -> `clear` sent) "
            f"median {_ms(server['median'])} ms; the rest is the VAD confirming speech "
            f"(barge_in_ms = 140 of speech) and its onset lag behind the audio")


def _concurrency_why(conc: dict[str, Any]) -> str:
    bad = next((r for r in conc["rows"] if not r["ok"]), None)
    if bad is None:
        return "more levels needed"
    parts = [f"at {bad['calls']} calls p95 {_ms(bad['latency']['p95'])} ms"]
    if bad["gaps"]:
        parts.append(f"{bad['gaps']} audio gaps (longest {_ms(bad['longest_gap'])} ms)")
    parts.append(f"stt median {_ms(bad['stt']['median'])} ms, tts first audio median "
                 f"{_ms(bad['tts']['median'])} ms: CPU")
    return "; ".join(parts)


def _scenarios(L: list[str], res: dict[str, Any], m: dict[str, Any]) -> None:
    sc = res["scenarios"]
    L.append("## Turn latency by stage")
    L.append("")
    L.append("Each column: median / p95 / min-max in ms (n turns). The stages add up to the "
             "caller's turn_latency: offset + endpoint_wait + stt + first token + first clause "
             "+ tts first audio + overhead (the server's turn_latency is the same without the "
             "offset). The first clause and tts numbers of a turn that began with a filler are "
             "those of the answer's first clause. heard_latency ends at the first mark echo, "
             "which Twilio sends when the first piece (the first clause) has been played, so "
             "it is turn_latency plus that clause's duration.")
    L.append("")
    keys = [k for k in SCENARIO_ORDER if k in m]
    L.append("| metric | " + " | ".join(sc[k]["label"] for k in keys) + " |")
    L.append("|---|" + "---:|" * len(keys))
    rows = [("turn_latency (caller)", "turn_latency"), ("heard_latency (caller)", "heard_latency"),
            ("answer (server, first non-filler audio)", "answer"),
            *((STAGE_LABELS[k], k) for k in STAGE_LABELS),
            ("turn_latency (server, stored)", "server_turn_latency")]
    for label, key in rows:
        cells = []
        for k in keys:
            s = m[k][key]
            cells.append("-" if s["median"] is None else
                         f"{_ms(s['median'])} / {_ms(s['p95'])} / {_spread(s)} ({s['n']})")
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L.append("")
    for k in keys:
        turns = sc[k]["turns"]
        fillers = sum(1 for t in turns if t.get("filler"))
        early = sum(t.get("early_turns", 0) for t in turns)
        gaps = sum(len(t.get("dry_gaps", [])) for t in turns)
        notes = [f"start-up {sc[k]['startup_s']:.0f} s"]
        if fillers:
            notes.append(f"{fillers} of {len(turns)} replies began with the \"one moment\" "
                         f"filler")
        if early:
            notes.append(f"{early} turn(s) ended by the server inside an utterance")
        if gaps:
            notes.append(f"{gaps} audio gap(s) > 100 ms in replies"
                         + (" (the wait between the filler and the answer)" if fillers else ""))
        rounds = sc[k].get("local_rounds")
        if rounds:
            p = stats(r["prompt_tokens"] for r in rounds)
            c = stats(r["cached_tokens"] for r in rounds)
            f = stats(r["ttft_ms"] for r in rounds)
            notes.append(f"local model rounds: prompt {_ms(p['median'])} tokens (median), of "
                         f"which {_ms(c['median'])} reused from the cache, first token "
                         f"{_ms(f['median'])} ms (median of {f['n']} rounds)")
        L.append(f"- {sc[k]['label']}: " + "; ".join(notes) + ".")
    if "instant" in sc:
        turns = [t for t in sc["instant"]["turns"]
                 if t["caller_turn_ms"] is not None and _row(t, "endpoint_wait_ms") is not None]
        diff = stats(t["caller_turn_ms"] - _row(t, "endpoint_wait_ms") for t in turns)
        rest = stats(t["caller_turn_ms"] - _row(t, "endpoint_wait_ms") - (t["eos_lag_ms"] or 0)
                     for t in turns)
        L.append(f"- Instant engines, caller side: turn_latency - endpoint_wait median "
                 f"{_ms(diff['median'])} ms, p95 {_ms(diff['p95'])} ms; without the VAD's "
                 f"end-of-speech offset median {_ms(rest['median'])} ms, p95 "
                 f"{_ms(rest['p95'])} ms. The stored overhead_ms is a difference of times "
                 f"measured to one 32 ms VAD window, hence values just below zero.")
    L.append("")


def _per_utterance(L: list[str], sc: dict[str, Any]) -> None:
    if "cloud300" not in sc:
        return
    by: dict[str, list[dict[str, Any]]] = {}
    for t in sc["cloud300"]["turns"]:
        by.setdefault(t["wav"], []).append(t)
    L.append(f"### Per utterance ({sc['cloud300']['label']}; medians, ms)")
    L.append("")
    L.append("| utterance | turns | turn_latency | heard_latency | endpoint_wait | stt | "
             "tts first audio |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for wav, turns in by.items():
        cells = [_ms(stats(t["caller_turn_ms"] for t in turns)["median"]),
                 _ms(stats(t["caller_heard_ms"] for t in turns)["median"])]
        cells += [_ms(stats(_row(t, key) for t in turns)["median"])
                  for key in ("endpoint_wait_ms", "stt_ms", "tts_first_audio_ms")]
        L.append(f"| {wav} | {len(turns)} | " + " | ".join(cells) + " |")
    L.append("")


def _bargein(L: list[str], sc: dict[str, Any]) -> None:
    if "bargein" not in sc:
        return
    turns = [t for t in sc["bargein"]["turns"] if t.get("clear_ms") is not None
             or t.get("server_clear_ms") is not None]
    caller = stats(t.get("clear_ms") for t in turns)
    server = stats(t.get("server_clear_ms") for t in turns)
    L.append("## Barge-in")
    L.append("")
    L.append(f"{sc['bargein']['label']}, the Gemini stand-in answering a ~20 s reply; the "
             "caller speaks over it 0.8-2 s after it starts. Caller side: from the onset of "
             "speech in the audio (`speech_start_s`) to `clear` received. Server side: from the "
             "onset the VAD found (media clock) to `clear` sent (the BargeIn call event).")
    L.append("")
    L.append("| | median | p95 | min-max | n |")
    L.append("|---|---:|---:|---:|---:|")
    L.append(f"| barge_in_latency, caller side | {_stat_cells(caller)} |")
    L.append(f"| barge_in_latency, server side | {_stat_cells(server)} |")
    L.append("")


def _concurrency(L: list[str], conc: dict[str, Any], levels: list[dict[str, Any]]) -> None:
    first = levels[0]
    L.append("## Simultaneous calls")
    L.append("")
    L.append(f"{first['label']}. N calls start 10/N s apart, at most 2 s (on a real line calls "
             f"do not start in step); each speaks {first['turns_per_call']} turns after the "
             "greeting. The Twilio stand-ins run in the benchmark's process on the same two "
             "cores. A gap is an underrun of the caller's playback buffer longer than 100 ms "
             "after a reply started (\"mid-clause\": no mark between the two frames). The sweep "
             "stops once p95 passes 4 s.")
    L.append("")
    L.append("| calls | turns | turn_latency median | p95 | max | stt median | tts first audio "
             "median | gaps (mid-clause) | longest gap ms | peak RSS MB | holds |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in conc["rows"]:
        lat = r["latency"]
        L.append(f"| {r['calls']} | {lat['n']} | {_ms(lat['median'])} | {_ms(lat['p95'])} | "
                 f"{_ms(lat['max'])} | {_ms(r['stt']['median'])} | {_ms(r['tts']['median'])} "
                 f"| {r['gaps']} ({r['mid_piece_gaps']}) | {_ms(r['longest_gap'])} | "
                 f"{r['peak_rss_mb']:.0f} | {'yes' if r['ok'] else 'no'} |")
    L.append("")
    if conc["mb_per_call"] is not None:
        L.append(f"Memory: {conc['mb_per_call']:.1f} MB per additional call (least-squares "
                 f"slope of the appliance process's peak RSS over the levels; one process for "
                 f"all levels, so the peak only grows).")
        L.append("")


def _resampling(L: list[str], rs: dict[str, Any] | None) -> None:
    if not rs:
        return
    methods = [k for k in rs["aliasing"][0] if k != "signal"]
    L.append("## Resampling Piper's 22.05 kHz to 8 kHz")
    L.append("")
    L.append("Output energy relative to the input's (dB). Inputs above 4 kHz cannot appear in "
             "an 8 kHz stream, so all their output is aliasing; in-band tones show the "
             "passband. Mu-law adds noise about 38 dB below the signal.")
    L.append("")
    L.append("| signal | " + " | ".join(methods) + " |")
    L.append("|---|" + "---:|" * len(methods))
    for r in rs["aliasing"] + rs["passband"]:
        L.append(f"| {r['signal']} | " + " | ".join(f"{r[k]:.1f}" for k in methods) + " |")
    L.append("| speech-like buzz (137 Hz harmonics to 11 kHz, -6 dB/octave): aliases vs the "
             "in-band harmonics | " + " | ".join(f"{rs['buzz'][k]:.1f}" for k in methods)
             + " |")
    L.append("")
    L.append("-92 dB is the floor of the spectral measurement (Blackman-Harris window).")
    L.append("")


def _others(L: list[str], res: dict[str, Any]) -> None:
    L.append("## Other stage benchmarks")
    L.append("")
    kb = res.get("kb") or {}
    others = (("kb.md", ("knowledge-base query latency at 1k and 10k passages "
                         "(`python -m bench.kb_bench`)")),
              ("stt_tts.md", "Whisper and Piper stage timings (`python -m bench.stt_tts_bench`)"),
              ("failover.md", ("what a Gemini failure costs the caller "
                               "(`python -m bench.failover_bench`)")))
    for name, text in others:
        present = name in res.get("present", [])
        L.append(f"- [{name}]({name}): {text}" + ("" if present else " - not produced yet "
                                                  "(TODO)"))
    L.append("")
    if kb.get("table"):
        L.append("### Knowledge base (the table of [kb.md](kb.md), copied as this run found it)")
        L.append("")
        L.extend(kb["table"])
        L.append("")


def _models(L: list[str], meta: dict[str, Any]) -> None:
    L.append("## Models and stand-ins")
    L.append("")
    L.append("Random weights with the real architectures' shapes, generated locally "
             "(bench/models.py, bench/vits_voice.py), so compute is honest and words are not:")
    L.append("")
    for k, v in meta["models"].items():
        L.append(f"- {k}: {v}")
    for note in meta.get("notes", []):
        L.append(f"- {note}")
    L.append("")


# -- the plot --------------------------------------------------------------------------------

def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc = res["scenarios"]
    keys = [k for k in SCENARIO_ORDER if k in sc]
    fig, axes = plt.subplots(3, 2, figsize=(13, 13))
    rng = np.random.default_rng(0)

    def dist(ax, groups: list[tuple[str, list[float]]], title: str, lines=()) -> None:
        data = [v for _, v in groups]
        if any(data):
            ax.boxplot([v if v else [np.nan] for v in data], orientation="horizontal",
                       widths=0.5, showfliers=False)
            for i, v in enumerate(data, 1):
                ax.scatter(v, i + rng.uniform(-0.15, 0.15, len(v)), s=12, alpha=0.6)
        ax.set_yticks(range(1, len(groups) + 1), [g for g, _ in groups], fontsize=8)
        for x, label in lines:
            ax.axvline(x, color="red", ls="--", lw=1)
            ax.text(x, len(groups) + 0.45, label, color="red", fontsize=7, ha="left",
                    rotation=45)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("ms")

    def vals(turns, key):
        return [t[key] for t in turns if t.get(key) is not None]

    dist(axes[0, 0], [(SHORT[k], vals(sc[k]["turns"], "caller_turn_ms")) for k in keys],
         "turn_latency (caller side); targets 600 / 900 / 1200 ms",
         [(600, ""), (900, ""), (1200, "")])
    dist(axes[0, 1], [(SHORT[k], vals(sc[k]["turns"], "caller_heard_ms")) for k in keys],
         "heard_latency (caller side)")
    ax = axes[1, 0]
    left = np.zeros(len(keys))
    for stage in STAGE_LABELS:
        med = np.array([metrics(sc[k]["turns"])[stage]["median"] or 0.0 for k in keys])
        med = np.maximum(med, 0)
        ax.barh(range(len(keys)), med, left=left, label=stage)
        left += med
    ax.set_yticks(range(len(keys)), [SHORT[k] for k in keys], fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("turn_latency by stage (medians)", fontsize=10)
    ax.set_xlabel("ms")
    levels = res.get("concurrency") or []
    ax = axes[1, 1]
    ax2 = axes[2, 1]
    if levels:
        conc = concurrency_summary(levels)
        n = [r["calls"] for r in conc["rows"]]
        ax.plot(n, [r["latency"]["median"] for r in conc["rows"]], "o-", label="median")
        ax.plot(n, [r["latency"]["p95"] for r in conc["rows"]], "s--", label="p95")
        ax2.plot(n, [r["peak_rss_mb"] for r in conc["rows"]], "o-", label="peak RSS")
        ax.axhline(1500, color="red", ls="--", lw=1)
        ax.set_xlabel("simultaneous calls")
        ax.set_ylabel("turn_latency ms")
        ax.legend(fontsize=8)
        ax2.set_xlabel("simultaneous calls")
        ax2.set_ylabel("MB")
        ax2.legend(fontsize=8)
        ax2.set_title("memory of the appliance process", fontsize=10)
    ax.set_title(f"turn_latency vs simultaneous calls\n({levels[0]['label']})" if levels
                 else "", fontsize=9)
    if "bargein" in sc:
        turns = sc["bargein"]["turns"]
        dist(axes[2, 0], [("caller side", vals(turns, "clear_ms")),
                          ("server side", vals(turns, "server_clear_ms"))],
             "barge_in_latency: speech onset -> clear", [(250, "250")])
    fig.suptitle(f"{res['meta']['date']} - {res['meta']['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(res: dict[str, Any], outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "raw.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    (outdir / "RESULTS.md").write_text(render_markdown(res))
    plot(res, outdir / "latency.png")


if __name__ == "__main__":
    raw = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/raw.json")
    write(json.loads(raw.read_text()), raw.parent)
