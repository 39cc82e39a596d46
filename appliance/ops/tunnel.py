"""Cloudflare Tunnel: the named tunnel's config.yml, and a check that the public URL reaches
this very box.

`render_config()` writes ingress rules for the appliance's own routes only (everything else gets
cloudflared's `http_status:404`, so an admin or debug route added later is not exposed by
accident). cloudflared proxies WebSocket upgrades (/ws, the Media Stream) on ordinary http
ingress; the zone's WebSockets setting must be on (it is by default).

The reachability probe: `probe_public_url()` POSTs to <public_url>/healthz/tunnel with a random
nonce, signed like a Twilio webhook with TWILIO_AUTH_TOKEN over the *public* URL. Only a box
holding the token and configured with the same public_url accepts it, and it answers with
HMAC-SHA256(token, "tunnel-probe:" + nonce), which the caller checks. So a 200 proves the
request went through the tunnel to this appliance, and that Twilio's signatures will verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from twilio.request_validator import RequestValidator

from ..config import Settings
from ..telephony.guard import TwilioGuard
from ..telephony.signature import SIGNATURE_HEADER, signed_url

# (path regex, why). Anchored: /voice must not also match /voicemail-admin.
ROUTES: tuple[tuple[str, str], ...] = (
    (r"^/voice(-stream(/action)?)?$", "Twilio voice webhooks"),
    (r"^/(respond|check_ai|reprompt|dial-status|continue|gather-partial|call-status)$",
     "Twilio call progress"),
    (r"^/gather-audio/CA[0-9a-f]{32}/[A-Za-z0-9_-]+\.wav$", "<Gather> replies (signed URLs)"),
    (r"^/message(-status)?$", "WhatsApp/SMS webhooks"),
    (r"^/ws/[A-Za-z0-9_-]+$", "the Media Stream WebSocket (one-time path)"),
    (r"^/admin(/.*)?$", "the owner's dashboard"),
    (r"^/calendar/[^/]+\.ics$", "the appointment calendar feed (secret URL)"),
    (r"^/healthz(/tunnel)?$", "health and the tunnel probe"),
)
PROBE_PATH = "/healthz/tunnel"


@dataclass(frozen=True)
class TunnelConfig:
    tunnel: str                 # the named tunnel's UUID or name (`cloudflared tunnel create`)
    credentials_file: Path      # ~/.cloudflared/<UUID>.json written by `tunnel create`
    hostname: str               # the public host name routed to the tunnel
    origin: str                 # http://127.0.0.1:1337


def tunnel_config(settings: Settings, tunnel: str, credentials_file: Path) -> TunnelConfig:
    host = urllib.parse.urlsplit(settings.server.public_url).hostname
    if not host:
        raise ValueError("[server] public_url is empty: set it to the tunnel's https URL "
                         "(e.g. https://reception.example.com) first")
    server_host = settings.server.host
    local = "127.0.0.1" if server_host in ("0.0.0.0", "::", "") else server_host
    return TunnelConfig(tunnel, credentials_file, host, f"http://{local}:{settings.server.port}")


def render_config(cfg: TunnelConfig) -> str:
    """cloudflared's config.yml (YAML; every value is quoted JSON, which YAML accepts)."""
    q = json.dumps
    lines = ["# Written by `appliance tunnel`. Run: cloudflared tunnel --config THIS run",
             f"tunnel: {q(cfg.tunnel)}",
             f"credentials-file: {q(str(cfg.credentials_file))}",
             "originRequest:",
             "  connectTimeout: 10s",
             "ingress:"]
    for path, why in ROUTES:
        lines += [f"  # {why}",
                  f"  - hostname: {q(cfg.hostname)}",
                  f"    path: {q(path)}",
                  f"    service: {q(cfg.origin)}"]
    lines += ["  # everything else, on any host name", "  - service: http_status:404"]
    return "\n".join(lines) + "\n"


def write_config(cfg: TunnelConfig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_config(cfg), encoding="utf-8")
    tmp.replace(path)
    return path


# -- the probe ---------------------------------------------------------------------------------
def proof(auth_token: str, nonce: str) -> str:
    return hmac.new(auth_token.encode(), f"tunnel-probe:{nonce}".encode(),
                    hashlib.sha256).hexdigest()


def add_routes(app: web.Application, settings: Settings) -> None:
    guard = TwilioGuard(settings)
    token = settings.twilio.auth_token

    async def probe(request: web.Request) -> web.Response:
        if not guard.enabled or not token:
            return web.json_response({"error": "signatures are off or no token"}, status=409)
        params = await guard.form(request)         # 403 unless signed over the public URL
        nonce = params.get("nonce", "")
        if not 16 <= len(nonce) <= 128:
            return web.json_response({"error": "nonce"}, status=400)
        return web.json_response({"nonce": nonce, "proof": proof(token, nonce)})

    app.router.add_post(PROBE_PATH, probe)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


def probe_public_url(settings: Settings, timeout_s: float = 10.0) -> ProbeResult:
    """Does <public_url> reach this appliance? (Blocking; for `appliance doctor`.)"""
    public, token = settings.server.public_url, settings.twilio.auth_token
    if not public or not token:
        return ProbeResult(False, "needs [server] public_url and TWILIO_AUTH_TOKEN")
    nonce = secrets.token_hex(16)
    url = signed_url(public, PROBE_PATH)
    params = {"nonce": nonce}
    signature = RequestValidator(token).compute_signature(url, params)
    request = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(),
                                     headers={SIGNATURE_HEADER: signature}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            body = json.loads(resp.read(4096) or b"{}")
    except urllib.error.HTTPError as exc:
        why = {403: "the box there refused the signature (another box, another "
                    "TWILIO_AUTH_TOKEN, or its public_url differs)",
               404: "no appliance route there (tunnel ingress or an old version)"}
        return ProbeResult(False, f"{url}: HTTP {exc.code}: {why.get(exc.code, exc.reason)}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return ProbeResult(False, f"{url} is not reachable: {exc}")
    if not hmac.compare_digest(str(body.get("proof", "")), proof(token, nonce)):
        return ProbeResult(False, f"{url} answered, but not with this box's proof")
    return ProbeResult(True, f"{public} reaches this appliance (signed probe answered)")
