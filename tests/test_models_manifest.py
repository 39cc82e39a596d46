"""Model downloads: resumable, verified, and honest when they cannot be done."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from appliance import models_manifest as mm
from appliance.cli import main

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    requests: list[dict] = []
    cut_after: int | None = None    # drop the connection after this many bytes (once)

    def do_GET(self) -> None:  # noqa: N802
        rng = self.headers.get("Range")
        type(self).requests.append({"path": self.path, "range": rng})
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after is not None:
            self.wfile.write(body[:type(self).cut_after])
            type(self).cut_after = None
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _file(server: str, sha: str | None = None) -> mm.ModelFile:
    return mm.ModelFile(url=f"{server}/m.bin", path="sub/m.bin", size=len(PAYLOAD),
                        sha256=sha if sha is not None else hashlib.sha256(PAYLOAD).hexdigest())


def test_download_verifies_and_moves_into_place(tmp_path: Path, server: str) -> None:
    seen = []
    mm.download_file(tmp_path, _file(server), progress=lambda *a: seen.append(a))
    assert (tmp_path / "sub/m.bin").read_bytes() == PAYLOAD
    assert mm.verify_file(tmp_path, _file(server)) is None
    assert seen[-1][1] == len(PAYLOAD)


def test_an_interrupted_download_resumes_with_range(tmp_path: Path, server: str) -> None:
    _Handler.cut_after = 30000
    with pytest.raises(Exception):  # noqa: B017 - whatever the cut connection raises
        mm.download_file(tmp_path, _file(server))
    part = tmp_path / "sub/m.bin.part"
    assert part.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    have = part.stat().st_size
    mm.download_file(tmp_path, _file(server))
    assert _Handler.requests[-1]["range"] == f"bytes={have}-"
    assert (tmp_path / "sub/m.bin").read_bytes() == PAYLOAD


def test_a_bad_checksum_is_refused_and_not_installed(tmp_path: Path, server: str) -> None:
    with pytest.raises(mm.ManifestError, match="checksum mismatch"):
        mm.download_file(tmp_path, _file(server, sha="0" * 64))
    assert not (tmp_path / "sub/m.bin").exists()
    assert not (tmp_path / "sub/m.bin.part").exists()


def test_manifest_is_complete_and_pinned() -> None:
    entries = mm.load_manifest()
    kinds = {e.kind for e in entries if e.default}
    assert kinds == {"stt", "tts", "llm", "embedding", "turn"}
    for entry in entries:
        assert entry.why and entry.needed_for
        for f in entry.files:
            assert f.url.startswith("https://huggingface.co/") and f.size > 0
            assert len(f.sha256) == 64


def test_models_download_without_network_says_what_is_missing(tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    config = tmp_path / "config.ini"
    config.write_text(f"[models]\ndirectory = {tmp_path / 'models'}\n")

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(mm.urllib.request, "urlopen", offline)
    code = main(["--config", str(config), "models", "download"])
    err = capsys.readouterr().err
    assert code == 1
    assert "MISSING whisper-base" in err and "speech recognition" in err
    assert "resume" in err
    code = main(["--config", str(config), "models", "list"])
    assert code == 0 and "not downloaded" in capsys.readouterr().out

