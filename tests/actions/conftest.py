"""Set-up shared by the business actions' tests: a database, an SMTP server on loopback and the
actions harness at the shared clock (tests/support/actions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.store.db import Database
from tests.support.actions import NOW, make_harness


@pytest.fixture
async def db(tmp_path: Path):
    database = await Database.open(tmp_path / "a.db")
    yield database
    database.close()


@pytest.fixture
async def h(tmp_path: Path):
    """The actions wired on a temp database at NOW (a test module may need its own)."""
    harness = await make_harness(tmp_path, NOW)
    yield harness
    harness.close()
