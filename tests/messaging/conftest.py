"""Set-up shared by the messaging tests: the messaging harness on the Twilio stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.messaging import running


@pytest.fixture
async def harness(tmp_path: Path, fake_twilio: FakeTwilio):
    """The real messaging routes, started on a temp database (see support/messaging.py)."""
    async with running(tmp_path, fake_twilio) as h:
        yield h
