"""Fixtures for every test (tests/support/fixtures.py); each area's own are in its conftest."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before llama.cpp / CTranslate2 load

from tests.support.fixtures import (  # noqa: E402
    crm_server, fake_twilio, gemini, make_settings, smtp_server, test_models, tiny_fs)

__all__ = ["crm_server", "fake_twilio", "gemini", "make_settings", "smtp_server", "test_models",
           "tiny_fs"]
