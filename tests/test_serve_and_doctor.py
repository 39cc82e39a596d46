"""`appliance serve` says the truth in /healthz; `appliance doctor` explains every missing piece;
bad configuration stops start-up before anything listens."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp

from appliance.cli import main
from appliance.config import load_settings
from appliance.server import running
from tests.support.fixtures import TOKEN, write_ini

REPO = Path(__file__).resolve().parent.parent


async def test_healthz_is_200_with_every_component_loaded(make_settings) -> None:
    settings = make_settings(environ={"TWILIO_AUTH_TOKEN": TOKEN})    # no Gemini: offline
    async with running(settings) as srv:
        async with aiohttp.ClientSession() as http:
            async with http.get(srv.url + "/healthz") as resp:
                body = await resp.json()
                assert resp.status == 200, body
    assert body["ready"] is True and body["problems"] == []
    for name in ("database", "vad", "stt", "tts", "local_llm", "embedding"):
        assert body["components"][name]["ok"], name
    assert body["gemini"] == {"configured": False}
    assert body["llm"]["mode"] in ("offline", "local")


async def test_healthz_is_503_and_names_the_missing_models(tmp_path: Path) -> None:
    """The shipped model names, not downloaded: the server starts, but says it cannot take calls
    and how to fix it."""
    ini = write_ini(tmp_path / "config.ini", None, f"[models]\ndirectory = {tmp_path}/models\n")
    settings = load_settings(ini, environ={"TWILIO_AUTH_TOKEN": TOKEN})
    async with running(settings) as srv:
        async with aiohttp.ClientSession() as http:
            async with http.get(srv.url + "/healthz") as resp:
                body = await resp.json()
                assert resp.status == 503
            async with http.post(srv.url + "/voice-stream", data={}) as resp:
                assert resp.status == 403        # unsigned: refused before anything else
    assert body["ready"] is False
    assert not body["components"]["stt"]["ok"]
    assert "appliance models download base" in body["components"]["stt"]["detail"]
    assert "appliance models download en_US-joe-medium" in body["components"]["tts"]["detail"]
    assert any("language model" in p for p in body["problems"])
    assert body["components"]["database"]["ok"] and body["components"]["vad"]["ok"]


def test_doctor_explains_what_is_missing(tmp_path: Path, capsys) -> None:
    ini = write_ini(tmp_path / "config.ini", None, f"[models]\ndirectory = {tmp_path}/models\n")
    os.environ.pop("TWILIO_AUTH_TOKEN", None)
    code = main(["--config", str(ini), "doctor"])
    out = capsys.readouterr().out
    assert code == 1
    assert "SQLite" in out and "sqlite-vec" in out
    assert "FAIL [stt] model" in out and "appliance models download base" in out
    assert "TWILIO_AUTH_TOKEN is not set" in out
    assert "GEMINI_API_KEY is not set" in out


def test_doctor_reports_a_broken_config_instead_of_crashing(tmp_path: Path, capsys) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text("[server]\nport = many\n")
    assert main(["--config", str(ini), "doctor"]) == 1
    assert "[server] port" in capsys.readouterr().out


def test_serve_refuses_a_bad_config_before_listening(tmp_path: Path) -> None:
    ini = tmp_path / "config.ini"
    shutil.copy(REPO / "config.ini", ini)   # public_url empty, signatures on
    proc = subprocess.run([sys.executable, "-m", "appliance", "--config", str(ini), "serve"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TWILIO_AUTH_TOKEN": "x"})
    assert proc.returncode == 2
    assert "[server] public_url" in proc.stderr and "Cloudflare" in proc.stderr
    assert "nothing was started" in proc.stderr
