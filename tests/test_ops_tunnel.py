"""`appliance tunnel` writes ingress for the appliance's routes only; the signed probe through
the public URL proves it reaches this box (here the "tunnel" is loopback: public_url is the
server's own address, as cloudflared would make it)."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import yaml

from appliance.cli import main
from appliance.config import load_settings
from appliance.ops import tunnel
from appliance.server import running
from tests.support.fixtures import write_ini
from tests.support.ops import free_port

APP_ROUTES = ["/voice", "/voice-stream", "/voice-stream/action", "/respond", "/check_ai",
              "/reprompt", "/dial-status", "/continue", "/gather-partial", "/call-status",
              "/gather-audio/CA0123456789abcdef0123456789abcdef/Ab3_-x9.wav", "/message", "/message-status", "/ws/Ab3_-x9", "/admin",
              "/admin/calls", "/healthz", "/healthz/tunnel", "/calendar/abc.ics"]
NOT_ROUTES = ["/", "/voicemail", "/voice/x", "/debug", "/healthz2", "/ws", "/ws/a/b", "/.env",
              "/administrator", "/gather-audio/x/../../etc.wav"]


def routed(config: dict, host: str, path: str) -> str:
    """cloudflared's matching: the first rule whose hostname and path regex match."""
    for rule in config["ingress"]:
        if rule.get("hostname", host) == host and re.search(rule.get("path", ""), path):
            return rule["service"]
    raise AssertionError("no catch-all rule")


def test_tunnel_command_writes_ingress_for_the_appliance_routes_only(tmp_path, capsys) -> None:
    ini = write_ini(tmp_path / "config.ini", None, "[server]\nport = 1337\n")
    out = tmp_path / "cloudflared" / "config.yml"
    code = main(["--config", str(ini), "tunnel", "--tunnel", "appliance",
                 "--credentials-file", str(tmp_path / "uuid.json"), "--out", str(out)])
    assert code == 0 and "cloudflared tunnel route dns" in capsys.readouterr().out
    config = yaml.safe_load(out.read_text())
    assert config["tunnel"] == "appliance"
    assert config["credentials-file"] == str(tmp_path / "uuid.json")
    assert config["ingress"][-1] == {"service": "http_status:404"}
    host = "receptionist.example.com"
    for path in APP_ROUTES:
        assert routed(config, host, path) == "http://127.0.0.1:1337", path
    for path in NOT_ROUTES:
        assert routed(config, host, path) == "http_status:404", path
    assert routed(config, "other.example.com", "/voice") == "http_status:404"


def test_tunnel_needs_a_public_url(tmp_path, capsys) -> None:
    ini = write_ini(tmp_path / "config.ini", None, "[server]\npublic_url =\n"
                    "[twilio]\nvalidate_signatures = false\n")
    assert main(["--config", str(ini), "tunnel", "--tunnel", "t", "--credentials-file",
                 str(tmp_path / "c.json"), "--out", str(tmp_path / "c.yml")]) == 2
    assert "public_url is empty" in capsys.readouterr().err


async def test_the_signed_probe_reaches_this_box_and_only_this_box(make_settings) -> None:
    port = free_port()
    settings = make_settings(extra=f"[server]\nport = {port}\n"
                                   f"public_url = http://127.0.0.1:{port}\n")
    async with running(settings) as srv:
        result = await asyncio.to_thread(tunnel.probe_public_url, settings)
        assert result.ok, result.detail
        # another box's token (or a wrong public_url) is refused by the server
        other = load_settings(settings.path, environ={"TWILIO_AUTH_TOKEN": "another-token"})
        refused = await asyncio.to_thread(tunnel.probe_public_url, other)
        assert not refused.ok and "HTTP 403" in refused.detail
        async with aiohttp.ClientSession() as http:          # unsigned: refused
            async with http.post(srv.url + tunnel.PROBE_PATH, data={"nonce": "x" * 32}) as r:
                assert r.status == 403
    gone = await asyncio.to_thread(tunnel.probe_public_url, settings, 2.0)
    assert not gone.ok and "not reachable" in gone.detail


def test_doctor_lists_every_model_licence(tmp_path, capsys) -> None:
    ini = write_ini(tmp_path / "config.ini", None, f"[models]\ndirectory = {tmp_path}/m\n"
                    "[tts]\nvoice_he = he_IL-saspeech-medium\n")
    main(["--config", str(ini), "doctor"])
    out = capsys.readouterr().out
    assert "en_US-joe-medium licence: CC0-1.0" in out
    assert "whisper-base licence: MIT" in out and "Apache-2.0" in out
    assert "WARN [tts] voice_he: he_IL-saspeech-medium licence:" in out
    assert "a business may not use it" in out and "GPL-3.0-or-later" in out
