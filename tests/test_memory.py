"""The malloc-arena cap (appliance/memory.py) is applied by the real server start-up."""

from __future__ import annotations

import subprocess
import sys


def test_the_arena_cap_is_set_through_glibc() -> None:
    # In a fresh interpreter (this one may already run with MALLOC_ARENA_MAX set).
    code = ("import os; os.environ.pop('MALLOC_ARENA_MAX', None); "
            "from appliance.memory import limit_malloc_arenas; print(limit_malloc_arenas())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "True"


def test_the_environment_wins(monkeypatch) -> None:
    from appliance.memory import limit_malloc_arenas
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
