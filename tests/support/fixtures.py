"""The fixtures every area shares (registered by tests/conftest.py): the generated test models,
Settings written the way an owner would, the Twilio REST stand-in, the CRM stand-in, a tiny
filesystem to fill; and the constants they use."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from aiohttp import web

from appliance.config import Settings, load_settings
from tests.support.fakes.gemini_server import FakeGemini
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support import models as tm

HERE = Path(__file__).resolve().parents[1]      # tests/
MODELS_CACHE = HERE / ".cache" / "models"
AUDIO_DIR = HERE / "data" / "audio"
TOKEN = "test-auth-token-0123456789"
PUBLIC_URL = "https://receptionist.example.com"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2          # the Twilio account the stand-in serves


@pytest.fixture(scope="session")
def test_models() -> tm.TestModels:
    return tm.ensure_models(MODELS_CACHE)


def write_ini(path: Path, models: tm.TestModels | None, extra: str = "") -> Path:
    """A config file like the shipped one, pointing at the test models and a temp database."""
    model_lines = ""
    if models is not None:
        model_lines = (f"[stt]\nmodel = {models.whisper_dir}\nlanguages = en, he, ru\n"
                       f"[tts]\nvoice = {models.piper_voice}\n"
                       f"[local_llm]\nmodel_path = {models.chat_gguf}\ncontext_tokens = 2048\n"
                       f"[kb]\nembedding_model = {models.embedding_gguf}\n"
                       f"directory = {HERE.parent / 'kb'}\n")
    text = (f"[server]\nhost = 127.0.0.1\nport = 0\npublic_url = {PUBLIC_URL}\n"
            f"secrets_file = {path.parent / 'no-secrets.env'}\n"
            f"[storage]\ndatabase = {path.parent / 'appliance.db'}\n"
            f"[twilio]\noperator_number = +15550009999\n"
            f"[business]\nname = Sunrise Appliances\ntimezone = Asia/Jerusalem\n"
            f"greeting = Hello, you have reached Sunrise Appliances.\n"
            + model_lines + extra)
    path.write_text(_merge(text), encoding="utf-8")
    return path


def _merge(text: str) -> str:
    """Later sections with the same name extend earlier ones (extra= may repeat a section)."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(text)
    lines = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {v}" for k, v in parser.items(section))
    return "\n".join(lines) + "\n"


@pytest.fixture
def make_settings(tmp_path: Path, test_models: tm.TestModels) -> Callable[..., Settings]:
    def make(extra: str = "", environ: dict[str, str] | None = None) -> Settings:
        ini = write_ini(tmp_path / "config.ini", test_models, extra)
        env = {"TWILIO_AUTH_TOKEN": TOKEN} if environ is None else environ
        return load_settings(ini, environ=env)
    return make


@pytest.fixture
async def gemini():
    """The Gemini stand-in on loopback, no reply scripted (a module may define its own)."""
    async with FakeGemini() as server:
        yield server


@pytest.fixture
async def fake_twilio():
    """The Twilio REST stand-in on loopback, shared by the messaging and webhook tests."""
    async with FakeTwilio(ACCOUNT_SID, TOKEN) as fake:
        yield fake


@pytest.fixture
def smtp_server():
    """An SMTP server on loopback (aiosmtpd) that keeps what it receives."""
    from tests.support.actions import FakeSmtp
    server = FakeSmtp().start()
    yield server
    server.stop()


@pytest.fixture
async def crm_server():
    """An HTTP CRM on loopback: Dana Levi is found, +972500000001 is slow, ...02 broken."""
    seen: list[str] = []

    async def lookup(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        phone = request.query["phone"]
        if phone == "+972501234567":
            return web.json_response({"customer": {"name": "Dana Levi", "language": "he",
                                                   "gender": "f", "tags": ["vip"],
                                                   "notes": "Owns two fridges"}})
        if phone == "+972500000001":
            await asyncio.sleep(2)
        if phone == "+972500000002":
            return web.Response(status=500, text="boom")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/people", lookup)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/people?phone={{phone}}", seen
    await runner.cleanup()


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A real 2 MB tmpfs to fill up (mounting needs root: skipped otherwise)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(folder: Path) -> Path:
    """A file that fills the filesystem `folder` is on, until a write fails."""
    filler = folder / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler
