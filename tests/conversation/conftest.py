"""Set-up shared by the conversation engine's and the Gemini client's tests."""

from __future__ import annotations

import pytest

from tests.support.fakes.gemini_server import FakeGemini


@pytest.fixture
def fake(gemini: FakeGemini) -> FakeGemini:
    """The Gemini stand-in (tests/support/fixtures.py), as these tests call it."""
    return gemini
